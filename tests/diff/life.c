/* connectx process-life tests (driven by tests/process_life.rs).
 *
 * Build: cc -O1 -Wall -o life tests/diff/life.c -lpthread
 * Run:   ./life TEST      TEST = threads | threads_capacity | fork | spawn | vforkclose | dup | closereuse | handoff
 *        ./life child     (started by `spawn`; stays in its parent's namespace)
 *
 * Each test enters its own network namespace (common.h), checks outcomes, prints "OK ..." and
 * exits 0, or prints "FAIL: ..." and exits 1. Every test is bounded by alarm().
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

extern char **environ;

#define FAIL(...)                                                              \
	do {                                                                   \
		int _e = errno;                                                \
		printf("FAIL: ");                                              \
		printf(__VA_ARGS__);                                           \
		printf(" (errno %d %s, line %d)\n", _e, strerror(_e), __LINE__); \
		fflush(stdout);                                                \
		_exit(1);                                                      \
	} while (0)

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			FAIL(__VA_ARGS__);                                     \
	} while (0)

static struct sockaddr_in sin4(const char *ip, int port)
{
	struct sockaddr_in s;
	memset(&s, 0, sizeof s);
	s.sin_family = AF_INET;
	s.sin_port = htons(port);
	inet_pton(AF_INET, ip, &s.sin_addr);
	return s;
}

#define SA(x) ((struct sockaddr *)&(x))

static int getopt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof v;
	if (getsockopt(fd, level, name, &v, &l) != 0)
		return -100 - errno;
	return v;
}

static struct sockaddr_in local_of(int fd)
{
	struct sockaddr_in s;
	socklen_t l = sizeof s;
	memset(&s, 0, sizeof s);
	if (getsockname(fd, SA(s), &l) != 0)
		s.sin_family = 0xffff;
	return s;
}

static const char *ipstr(struct sockaddr_in s)
{
	static __thread char buf[64];
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &s.sin_addr, ip, sizeof ip);
	snprintf(buf, sizeof buf, "%s:%d", ip, ntohs(s.sin_port));
	return buf;
}

static void close_rst(int fd)
{
	struct linger lg = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ---------- servers: TCP listeners with an acceptor thread, UDP sinks ---------- */
#define MAXL 16
static int listeners[MAXL], nlisteners;
static atomic_int accepted;
static atomic_int acceptor_stop;
static int acceptor_keep; /* keep accepted sockets open (else close at once) */
static int *kept;
static int nkept;

static int tcp_listener(const char *ip, int port)
{
	struct sockaddr_in a = sin4(ip, port);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(s >= 0, "listener socket");
	CHECK(bind(s, SA(a), sizeof a) == 0, "listener bind %s:%d", ip, port);
	CHECK(listen(s, 4096) == 0, "listen");
	listeners[nlisteners++] = s;
	return s;
}

static int udp_sink(const char *ip, int port)
{
	struct sockaddr_in a = sin4(ip, port);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(s >= 0, "udp socket");
	CHECK(bind(s, SA(a), sizeof a) == 0, "udp bind %s:%d", ip, port);
	return s;
}

static void *acceptor(void *arg)
{
	(void)arg;
	struct pollfd p[MAXL];
	while (!atomic_load(&acceptor_stop)) {
		for (int i = 0; i < nlisteners; i++)
			p[i] = (struct pollfd){listeners[i], POLLIN, 0};
		if (poll(p, nlisteners, 50) <= 0)
			continue;
		for (int i = 0; i < nlisteners; i++) {
			int c;
			while ((c = accept4(listeners[i], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
				atomic_fetch_add(&accepted, 1);
				if (acceptor_keep && nkept < 20000)
					kept[nkept++] = c;
				else
					close(c); /* FIN: the client's next send still succeeds */
			}
		}
	}
	return NULL;
}

static pthread_t start_acceptor(int keep)
{
	pthread_t t;
	acceptor_keep = keep;
	kept = calloc(20000, sizeof(int));
	CHECK(pthread_create(&t, NULL, acceptor, NULL) == 0, "pthread_create acceptor");
	return t;
}

static void stop_acceptor(pthread_t t)
{
	atomic_store(&acceptor_stop, 1);
	pthread_join(t, NULL);
	for (int i = 0; i < nkept; i++)
		close_rst(kept[i]);
	nkept = 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* TCP: socket, bind(src,0), connect(dst); returns fd or -1 (errno set, fd closed). */
static int tcp_bind0_connect(const char *src, const char *dst, int port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_in b = sin4(src, 0), d = sin4(dst, port);
	if (bind(s, SA(b), sizeof b) != 0 || connect(s, SA(d), sizeof d) != 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	return s;
}

/* ---------- threads: 8 threads x 200 bind(ip,0)+connect, all held ---------- */
#define NT 8
#define PER 200
static int tfds[NT][PER];
static int terr[NT];
static int tdone[NT];
static int tproto; /* 1 TCP, 0 UDP */
static int tdests; /* number of destinations 127.0.0.(10+i) */
static int tper;
static pthread_barrier_t tbar;

static void *hammer_hold(void *arg)
{
	long id = (long)arg;
	pthread_barrier_wait(&tbar);
	for (int i = 0; i < tper; i++) {
		char dst[32];
		snprintf(dst, sizeof dst, "127.0.0.%d", 10 + (int)((id + i) % tdests));
		int s;
		if (tproto) {
			s = tcp_bind0_connect("127.0.0.1", dst, 7001);
		} else {
			s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			struct sockaddr_in b = sin4("127.0.0.1", 0), d = sin4(dst, 7002);
			if (s >= 0 && (i & 1) && bind(s, SA(b), sizeof b) != 0) {
				close(s);
				s = -1;
			}
			if (s >= 0 && connect(s, SA(d), sizeof d) != 0) {
				int e = errno;
				close(s);
				errno = e;
				s = -1;
			}
			if (s >= 0 && send(s, "x", 1, 0) != 1) {
				close(s);
				s = -1;
			}
		}
		if (s < 0) {
			terr[id] = errno ? errno : -1;
			tdone[id] = i;
			return NULL;
		}
		tfds[id][i] = s;
	}
	return NULL;
}

struct tuple {
	struct sockaddr_in l, p;
};

static int tuple_cmp(const void *a, const void *b)
{
	const struct tuple *x = a, *y = b;
	if (x->l.sin_addr.s_addr != y->l.sin_addr.s_addr)
		return x->l.sin_addr.s_addr < y->l.sin_addr.s_addr ? -1 : 1;
	if (x->l.sin_port != y->l.sin_port)
		return x->l.sin_port < y->l.sin_port ? -1 : 1;
	if (x->p.sin_addr.s_addr != y->p.sin_addr.s_addr)
		return x->p.sin_addr.s_addr < y->p.sin_addr.s_addr ? -1 : 1;
	if (x->p.sin_port != y->p.sin_port)
		return x->p.sin_port < y->p.sin_port ? -1 : 1;
	return 0;
}

static int run_hold(int proto, int dests, int per, int keep)
{
	pthread_t th[NT];
	tproto = proto;
	tdests = dests;
	tper = per;
	memset(terr, 0, sizeof terr);
	pthread_barrier_init(&tbar, NULL, NT);
	double t0 = now();
	for (long i = 0; i < NT; i++)
		CHECK(pthread_create(&th[i], NULL, hammer_hold, (void *)i) == 0, "pthread_create");
	for (int i = 0; i < NT; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NT; i++)
		if (terr[i]) {
			int total = 0;
			for (int j = 0; j < NT; j++)
				total += terr[j] ? tdone[j] : per;
			errno = terr[i] > 0 ? terr[i] : 0;
			FAIL("%s: thread %d failed after %d sockets (%d of %d connected in all)", proto ? "TCP" : "UDP", i,
			     tdone[i], total, NT * per);
		}
	int n = NT * per;
	struct tuple *t = calloc(n, sizeof *t);
	for (int i = 0; i < NT; i++)
		for (int j = 0; j < per; j++) {
			int fd = tfds[i][j];
			struct tuple *x = &t[i * per + j];
			socklen_t l = sizeof x->l;
			CHECK(getsockname(fd, SA(x->l), &l) == 0, "getsockname");
			l = sizeof x->p;
			CHECK(getpeername(fd, SA(x->p), &l) == 0, "getpeername");
			CHECK(x->l.sin_port != 0, "port 0 after connect");
			CHECK(x->l.sin_addr.s_addr == htonl(0x7f000001), "source %s, want 127.0.0.1", ipstr(x->l));
		}
	qsort(t, n, sizeof *t, tuple_cmp);
	for (int i = 1; i < n; i++)
		CHECK(tuple_cmp(&t[i - 1], &t[i]) != 0, "duplicate 4-tuple %s", ipstr(t[i].l));
	free(t);
	if (proto && keep) {
		double dl = now() + 20;
		while (atomic_load(&accepted) < n && now() < dl)
			usleep(10000);
		CHECK(atomic_load(&accepted) >= n, "server accepted %d of %d", atomic_load(&accepted), n);
	}
	for (int i = 0; i < NT; i++)
		for (int j = 0; j < per; j++)
			close_rst(tfds[i][j]);
	printf("  %s: %d x %d connections to %d destination(s), distinct 4-tuples, %.2fs\n", proto ? "TCP" : "UDP", NT,
	       per, dests, now() - t0);
	return 0;
}

static int test_threads(void)
{
	for (int i = 0; i < 2; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "127.0.0.%d", 10 + i);
		tcp_listener(ip, 7001);
		udp_sink(ip, 7002);
	}
	pthread_t a = start_acceptor(1);
	run_hold(1, 2, PER, 1);
	stop_acceptor(a);
	run_hold(0, 2, PER, 0);
	printf("OK threads\n");
	return 0;
}

/* Only possible with connectx: 8 threads x 8 bind(ip,0)+connect over 8 destinations, R = 10. */
static int test_threads_capacity(void)
{
	for (int i = 0; i < NT; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "127.0.0.%d", 10 + i);
		tcp_listener(ip, 7001);
		udp_sink(ip, 7002);
	}
	pthread_t a = start_acceptor(1);
	run_hold(1, NT, 8, 1); /* 64 connections, R x D = 80 */
	stop_acceptor(a);
	run_hold(0, NT, 8, 0);
	printf("OK threads_capacity\n");
	return 0;
}

/* ---------- fork while other threads are inside hooks ---------- */
static atomic_int hstop;
static atomic_long hcount;
static atomic_int herr;

static void *hammer_loop(void *arg)
{
	long id = (long)arg;
	for (long i = 0; i < 1000000 && !atomic_load(&hstop); i++) {
		if ((i + id) % 2 == 0) {
			int s = tcp_bind0_connect("127.0.0.1", "127.0.0.10", 7001);
			if (s < 0) {
				atomic_store(&herr, errno ? errno : -1);
				return NULL;
			}
			int v = getopt_int(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
			if (v != 0) {
				atomic_store(&herr, 1000 + v);
				close_rst(s);
				return NULL;
			}
			close_rst(s);
		} else {
			int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			struct sockaddr_in d = sin4("127.0.0.10", 7002);
			if (s < 0 || connect(s, SA(d), sizeof d) != 0 || send(s, "x", 1, 0) != 1) {
				atomic_store(&herr, errno ? errno : -1);
				if (s >= 0)
					close(s);
				return NULL;
			}
			close(s);
		}
		atomic_fetch_add(&hcount, 1);
	}
	return NULL;
}

static int child_work(void)
{
	/* a TCP bind-before-connect, a UDP connect, option answers: all must work */
	int s = tcp_bind0_connect("127.0.0.1", "127.0.0.10", 7001);
	if (s < 0)
		return 10;
	struct sockaddr_in l = local_of(s);
	if (l.sin_port == 0)
		return 11;
	if (getopt_int(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) != 0 || getopt_int(s, SOL_SOCKET, SO_REUSEADDR) != 0)
		return 12;
	if (getopt_int(s, SOL_SOCKET, SO_ERROR) != 0)
		return 13;
	close_rst(s);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in d = sin4("127.0.0.10", 7002);
	if (u < 0 || connect(u, SA(d), sizeof d) != 0)
		return 14;
	if (local_of(u).sin_port == 0)
		return 15;
	if (send(u, "x", 1, 0) != 1)
		return 16;
	close(u);
	return 0;
}

static int wait_child(pid_t pid, double secs, const char *what)
{
	double dl = now() + secs;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		CHECK(r == 0, "waitpid %s", what);
		if (now() > dl) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			errno = 0;
			FAIL("%s: child %d hung (killed after %.0fs)", what, (int)pid, secs);
		}
		usleep(2000);
	}
	if (WIFSIGNALED(st)) {
		errno = 0;
		FAIL("%s: child killed by signal %d", what, WTERMSIG(st));
	}
	return WEXITSTATUS(st);
}

static int test_fork(void)
{
	tcp_listener("127.0.0.10", 7001);
	int sink = udp_sink("127.0.0.10", 7002);
	pthread_t a = start_acceptor(0);
	pthread_t th[4];
	for (long i = 0; i < 4; i++)
		CHECK(pthread_create(&th[i], NULL, hammer_loop, (void *)i) == 0, "pthread_create");
	/* drain the UDP sink from this thread between forks */
	char buf[64];
	int forks = 0;
	double t0 = now();
	for (int i = 0; i < 60; i++) {
		while (recv(sink, buf, sizeof buf, MSG_DONTWAIT) > 0)
			;
		usleep(2000 + (i % 7) * 500);
		pid_t pid = fork();
		CHECK(pid >= 0, "fork");
		if (pid == 0) {
			alarm(10);
			_exit(child_work());
		}
		int rc = wait_child(pid, 10, "fork");
		CHECK(rc == 0, "forked child %d failed with code %d", i, rc);
		forks++;
		CHECK(atomic_load(&herr) == 0, "hammer thread error %d", atomic_load(&herr));
	}
	atomic_store(&hstop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK(atomic_load(&herr) == 0, "hammer thread error %d", atomic_load(&herr));
	CHECK(child_work() == 0, "parent work after forks");
	stop_acceptor(a);
	printf("OK fork: %d forks while %ld hooked connects ran in 4 threads, %.2fs\n", forks, atomic_load(&hcount),
	       now() - t0);
	return 0;
}

/* ---------- vfork+exec, posix_spawn, fork+exec of a child that inherits the settings ---------- */
static int child_main(void)
{
	alarm(20);
	const char *exp_pre = getenv("LIFE_EXPECT_PRELOAD");
	const char *pre = getenv("LD_PRELOAD");
	int preloaded = 0;
	FILE *m = fopen("/proc/self/maps", "r");
	char line[512];
	while (m && fgets(line, sizeof line, m))
		if (strstr(line, "libconnectx.so"))
			preloaded = 1;
	if (m)
		fclose(m);
	if (exp_pre && strcmp(exp_pre, "1") == 0) {
		CHECK(pre && strstr(pre, "libconnectx.so"), "child: LD_PRELOAD not inherited (%s)", pre ? pre : "unset");
		CHECK(preloaded, "child: libconnectx.so not mapped");
	} else {
		CHECK(!preloaded, "child: libconnectx.so mapped but not expected");
	}
	/* every CONNECTX* variable the parent was given is visible */
	const char *want = getenv("LIFE_EXPECT_VARS"); /* "NAME=value,NAME=value" */
	if (want && *want) {
		char *w = strdup(want), *save = NULL;
		for (char *tok = strtok_r(w, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(tok, '=');
			CHECK(eq, "bad LIFE_EXPECT_VARS");
			*eq = 0;
			const char *v = getenv(tok);
			CHECK(v && strcmp(v, eq + 1) == 0, "child: %s is %s, want %s", tok, v ? v : "unset", eq + 1);
		}
	}
	/* bind-before-connect works */
	int s = tcp_bind0_connect("127.0.0.1", "127.0.0.10", 7001);
	CHECK(s >= 0, "child: bind(ip,0)+connect");
	CHECK(local_of(s).sin_port != 0, "child: no port");
	close_rst(s);
	/* capacity: bind(ip,0)+connect over 2 destinations with R = 10 (10 kernel, 20 connectx) */
	const char *cap = getenv("LIFE_EXPECT_CAPACITY");
	if (cap) {
		int fds[40], n = 0;
		for (int i = 0; i < 40; i++) {
			int c = tcp_bind0_connect("127.0.0.1", (i & 1) ? "127.0.0.11" : "127.0.0.10", 7001);
			if (c < 0)
				break;
			fds[n++] = c;
		}
		for (int i = 0; i < n; i++)
			close_rst(fds[i]);
		errno = 0;
		CHECK(n == atoi(cap), "child: %d bind(ip,0)+connect over 2 destinations, want %s", n, cap);
	}
	printf("child ok\n");
	fflush(stdout);
	return 0;
}

static int state_fd_udp, state_fd_tcp;

/* Parent-side state that a hooked close() in a vfork child must not disturb. */
static void make_state(void)
{
	state_fd_udp = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(state_fd_udp >= 0, "socket");
	CHECK(setsockopt(state_fd_udp, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0, "setsockopt");
	struct sockaddr_in b = sin4("127.0.0.3", 0);
	CHECK(bind(state_fd_udp, SA(b), sizeof b) == 0, "bind udp state");
	state_fd_tcp = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(state_fd_tcp >= 0, "socket");
	b = sin4("127.0.0.4", 0);
	CHECK(bind(state_fd_tcp, SA(b), sizeof b) == 0, "bind tcp state");
}

static void check_state(const char *what)
{
	CHECK(getopt_int(state_fd_udp, SOL_SOCKET, SO_REUSEADDR) == 1, "%s: parent's SO_REUSEADDR lost", what);
	CHECK(getopt_int(state_fd_tcp, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 0, "%s: NO_PORT shows %d", what,
	      getopt_int(state_fd_tcp, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT));
	struct sockaddr_in d = sin4("127.0.0.10", 7002);
	CHECK(connect(state_fd_udp, SA(d), sizeof d) == 0, "%s: parent's UDP connect", what);
	struct sockaddr_in l = local_of(state_fd_udp);
	CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.3") && l.sin_port, "%s: parent's UDP source %s, want 127.0.0.3:*",
	      what, ipstr(l));
	d = sin4("127.0.0.10", 7001);
	CHECK(connect(state_fd_tcp, SA(d), sizeof d) == 0, "%s: parent's TCP connect", what);
	l = local_of(state_fd_tcp);
	CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.4") && l.sin_port, "%s: parent's TCP source %s, want 127.0.0.4:*",
	      what, ipstr(l));
	close(state_fd_udp);
	close_rst(state_fd_tcp);
}

static int test_spawn(char *self, int vfork_close)
{
	tcp_listener("127.0.0.10", 7001);
	tcp_listener("127.0.0.11", 7001);
	udp_sink("127.0.0.10", 7002);
	pthread_t a = start_acceptor(1); /* keep: a reset would free the children's ports */
	char *cargv[] = {self, "child", NULL};
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

	/* vfork + exec. With vfork_close, the child first closes (through the hooked close() and
	 * dup2()) its copies of the parent's tracked sockets: the child has its own fd table but
	 * shares the parent's memory, so the parent's state must stay as it was. */
	make_state();
	fflush(stdout);
	pid_t pid = vfork();
	CHECK(pid >= 0, "vfork");
	if (pid == 0) {
		if (vfork_close) {
			close(state_fd_udp);
			close(state_fd_tcp);
			dup2(devnull, state_fd_tcp);
		}
		execve(self, cargv, environ);
		_exit(127);
	}
	CHECK(wait_child(pid, 30, "vfork+exec") == 0, "vfork+exec child failed");
	check_state(vfork_close ? "after the vfork child closed its copies of the parent's sockets" : "after vfork+exec");
	if (vfork_close) {
		stop_acceptor(a);
		printf("OK vforkclose: the parent's socket state survives closes in a vfork child\n");
		return 0;
	}

	/* posix_spawn, with a file action closing the parent's tracked socket */
	make_state();
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addclose(&fa, state_fd_udp);
	fflush(stdout);
	int rc = posix_spawn(&pid, self, &fa, NULL, cargv, environ);
	errno = rc;
	CHECK(rc == 0, "posix_spawn");
	posix_spawn_file_actions_destroy(&fa);
	CHECK(wait_child(pid, 30, "posix_spawn") == 0, "posix_spawn child failed");
	check_state("after posix_spawn");

	/* fork + exec */
	make_state();
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		close(state_fd_udp);
		close(state_fd_tcp);
		execve(self, cargv, environ);
		_exit(127);
	}
	CHECK(wait_child(pid, 30, "fork+exec") == 0, "fork+exec child failed");
	check_state("after fork+exec");
	stop_acceptor(a);
	printf("OK spawn: vfork+exec, posix_spawn, fork+exec\n");
	return 0;
}

/* ---------- dup family keeps state ---------- */
static int do_dup(int how, int fd)
{
	switch (how) {
	case 0:
		return dup(fd);
	case 1:
		return dup2(fd, 100);
	case 2:
		return dup3(fd, 101, O_CLOEXEC);
	case 3:
		return fcntl(fd, F_DUPFD_CLOEXEC, 200);
	case 4:
		return fcntl64(fd, F_DUPFD, 300);
	default:
		return fcntl64(fd, F_DUPFD_CLOEXEC, 400);
	}
}
static const char *dupname[] = {"dup", "dup2", "dup3", "F_DUPFD_CLOEXEC", "fcntl64(F_DUPFD)", "fcntl64(F_DUPFD_CLOEXEC)"};

static int test_dup(void)
{
	tcp_listener("127.0.0.10", 7001);
	int sink = udp_sink("127.0.0.10", 7002);
	pthread_t a = start_acceptor(0);
	struct sockaddr_in src = sin4("127.0.0.3", 0), dt = sin4("127.0.0.10", 7001), du = sin4("127.0.0.10", 7002);
	for (int how = 0; how < 6; how++) {
		const char *w = dupname[how];
		/* TCP: bind(ip,0) on A, everything else through B */
		int A = socket(AF_INET, SOCK_STREAM, 0);
		CHECK(A >= 0 && bind(A, SA(src), sizeof src) == 0, "%s: bind", w);
		int B = do_dup(how, A);
		CHECK(B >= 0 && B != A, "%s", w);
		if (how == 2 || how == 3 || how == 5)
			CHECK(fcntl(B, F_GETFD) & FD_CLOEXEC, "%s: no FD_CLOEXEC", w);
		CHECK(getopt_int(B, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 0, "%s: NO_PORT via dup shows %d", w,
		      getopt_int(B, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT));
		CHECK(getopt_int(B, SOL_SOCKET, SO_REUSEADDR) == 0, "%s: SO_REUSEADDR via dup", w);
		CHECK(connect(B, SA(dt), sizeof dt) == 0, "%s: connect via dup", w);
		struct sockaddr_in la = local_of(A), lb = local_of(B);
		CHECK(la.sin_addr.s_addr == inet_addr("127.0.0.3") && la.sin_port && la.sin_port == lb.sin_port,
		      "%s: source %s / %s", w, ipstr(la), ipstr(lb));
		close(A);
		CHECK(send(B, "x", 1, MSG_NOSIGNAL) == 1, "%s: send after closing the original", w);
		CHECK(getopt_int(B, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 0, "%s: NO_PORT after close", w);
		close_rst(B);

		/* TCP: bind on A, getsockname via B (the port is needed now), connect via A: same port */
		A = socket(AF_INET, SOCK_STREAM, 0);
		CHECK(A >= 0 && bind(A, SA(src), sizeof src) == 0, "%s: bind", w);
		B = do_dup(how, A);
		CHECK(B >= 0, "%s", w);
		lb = local_of(B);
		CHECK(lb.sin_port != 0, "%s: getsockname via dup after bind(ip,0) shows port 0", w);
		CHECK(connect(A, SA(dt), sizeof dt) == 0, "%s: connect", w);
		la = local_of(A);
		CHECK(la.sin_port == lb.sin_port, "%s: port changed %s -> %s", w, ipstr(lb), ipstr(la));
		close_rst(A);
		close(B);

		/* UDP: program's SO_REUSEADDR=1 and bind(ip,0) on A, connect via B, send via A */
		A = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK(A >= 0, "socket");
		CHECK(setsockopt(A, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0, "setsockopt");
		CHECK(bind(A, SA(src), sizeof src) == 0, "%s: udp bind", w);
		B = do_dup(how, A);
		CHECK(B >= 0, "%s", w);
		CHECK(connect(B, SA(du), sizeof du) == 0, "%s: udp connect via dup", w);
		CHECK(getopt_int(A, SOL_SOCKET, SO_REUSEADDR) == 1, "%s: SO_REUSEADDR via original", w);
		CHECK(getopt_int(B, SOL_SOCKET, SO_REUSEADDR) == 1, "%s: SO_REUSEADDR via dup", w);
		CHECK(send(A, "y", 1, 0) == 1, "%s: udp send via original", w);
		la = local_of(A);
		CHECK(la.sin_addr.s_addr == inet_addr("127.0.0.3") && la.sin_port, "%s: udp source %s", w, ipstr(la));
		struct pollfd p = {sink, POLLIN, 0};
		CHECK(poll(&p, 1, 2000) == 1, "%s: sink got nothing", w);
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		char buf[8];
		CHECK(recvfrom(sink, buf, sizeof buf, 0, SA(from), &fl) == 1, "%s: recvfrom", w);
		CHECK(from.sin_addr.s_addr == la.sin_addr.s_addr && from.sin_port == la.sin_port,
		      "%s: sink saw %s, socket says %s", w, ipstr(from), ipstr(la));
		close(A);
		close(B);
	}

	/* dup2 over a tracked fd: the target becomes the new socket, no stale state */
	int U = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(setsockopt(U, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0, "setsockopt");
	CHECK(setsockopt(U, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &(int){1}, sizeof(int)) == 0, "setsockopt");
	CHECK(bind(U, SA(src), sizeof src) == 0, "bind");
	int T = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(dup2(T, U) == U, "dup2 over tracked");
	close(T);
	CHECK(getopt_int(U, SOL_SOCKET, SO_TYPE) == SOCK_STREAM, "dup2: type");
	CHECK(getopt_int(U, SOL_SOCKET, SO_REUSEADDR) == 0, "dup2: stale SO_REUSEADDR %d",
	      getopt_int(U, SOL_SOCKET, SO_REUSEADDR));
	CHECK(getopt_int(U, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 0, "dup2: stale NO_PORT");
	struct sockaddr_in l = local_of(U);
	CHECK(l.sin_addr.s_addr == 0 && l.sin_port == 0, "dup2: unbound socket shows %s", ipstr(l));
	CHECK(connect(U, SA(dt), sizeof dt) == 0, "dup2: connect");
	l = local_of(U);
	CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.1"), "dup2: stale source %s", ipstr(l));
	close_rst(U);

	/* dup2(fd, fd) is a no-op */
	int A = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(bind(A, SA(src), sizeof src) == 0, "bind");
	CHECK(dup2(A, A) == A, "dup2 same");
	CHECK(connect(A, SA(dt), sizeof dt) == 0, "connect after dup2(fd,fd)");
	l = local_of(A);
	CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.3"), "dup2(fd,fd) lost the bind: %s", ipstr(l));
	close_rst(A);
	stop_acceptor(a);
	printf("OK dup: dup, dup2, dup3, F_DUPFD_CLOEXEC, fcntl64 keep state; dup2 over a tracked fd\n");
	return 0;
}

/* ---------- closes that bypass close(), then fd reuse ---------- */
static void raw_close(int how, int fd)
{
	if (how == 0)
		CHECK(syscall(SYS_close, fd) == 0, "syscall(SYS_close)");
	else
		CHECK(close_range(fd, fd, 0) == 0, "close_range");
}

static int test_closereuse(void)
{
	tcp_listener("127.0.0.10", 7001);
	int sink = udp_sink("127.0.0.10", 7002);
	int lst = listeners[0];
	struct sockaddr_in src = sin4("127.0.0.3", 0), dt = sin4("127.0.0.10", 7001), du = sin4("127.0.0.10", 7002);
	for (int how = 0; how < 2; how++) {
		const char *w = how ? "close_range" : "syscall(SYS_close)";
		/* UDP with state, closed behind the library's back; the fd comes back as TCP */
		int U = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK(setsockopt(U, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0, "setsockopt");
		CHECK(setsockopt(U, SOL_SOCKET, SO_REUSEPORT, &(int){1}, sizeof(int)) == 0, "setsockopt");
		CHECK(bind(U, SA(src), sizeof src) == 0, "bind");
		raw_close(how, U);
		int T = socket(AF_INET, SOCK_STREAM, 0);
		CHECK(T == U, "%s: fd not reused (%d vs %d)", w, T, U);
		CHECK(getopt_int(T, SOL_SOCKET, SO_REUSEADDR) == 0, "%s: stale SO_REUSEADDR", w);
		CHECK(getopt_int(T, SOL_SOCKET, SO_REUSEPORT) == 0, "%s: stale SO_REUSEPORT", w);
		CHECK(getopt_int(T, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 0, "%s: stale NO_PORT", w);
		struct sockaddr_in l = local_of(T);
		CHECK(l.sin_addr.s_addr == 0 && l.sin_port == 0, "%s: new socket shows %s", w, ipstr(l));
		CHECK(connect(T, SA(dt), sizeof dt) == 0, "%s: connect", w);
		l = local_of(T);
		CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.1") && l.sin_port, "%s: stale source %s", w, ipstr(l));
		CHECK(getopt_int(T, SOL_SOCKET, SO_TYPE) == SOCK_STREAM, "%s: type", w);
		close_rst(T);

		/* TCP with state (NO_PORT and SO_REUSEADDR set by the program, bind(ip,0)); fd comes back as UDP */
		T = socket(AF_INET, SOCK_STREAM, 0);
		CHECK(setsockopt(T, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0, "setsockopt");
		CHECK(setsockopt(T, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &(int){1}, sizeof(int)) == 0, "setsockopt");
		CHECK(bind(T, SA(src), sizeof src) == 0, "bind");
		raw_close(how, T);
		U = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK(U == T, "%s: fd not reused", w);
		CHECK(getopt_int(U, SOL_SOCKET, SO_REUSEADDR) == 0, "%s: stale SO_REUSEADDR on UDP", w);
		CHECK(getopt_int(U, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 0, "%s: stale NO_PORT on UDP", w);
		CHECK(connect(U, SA(du), sizeof du) == 0, "%s: udp connect", w);
		l = local_of(U);
		CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.1") && l.sin_port, "%s: stale UDP source %s", w, ipstr(l));
		CHECK(send(U, "z", 1, 0) == 1, "%s: send", w);
		struct pollfd p = {sink, POLLIN, 0};
		CHECK(poll(&p, 1, 2000) == 1, "%s: sink got nothing", w);
		char buf[8];
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		CHECK(recvfrom(sink, buf, sizeof buf, 0, SA(from), &fl) == 1, "recvfrom");
		CHECK(from.sin_port == l.sin_port, "%s: sink saw %s, socket says %s", w, ipstr(from), ipstr(l));
		close(U);

		/* fd comes back as a non-socket */
		U = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK(bind(U, SA(src), sizeof src) == 0, "bind");
		raw_close(how, U);
		int F = open("/dev/null", O_RDWR);
		CHECK(F == U, "%s: fd not reused by open", w);
		errno = 0;
		CHECK(connect(F, SA(du), sizeof du) == -1 && errno == ENOTSOCK, "%s: connect on a file", w);
		errno = 0;
		CHECK(getopt_int(F, SOL_SOCKET, SO_REUSEADDR) == -100 - ENOTSOCK, "%s: getsockopt on a file", w);
		close(F);

		/* fd comes back from accept() */
		U = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK(setsockopt(U, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0, "setsockopt");
		CHECK(bind(U, SA(src), sizeof src) == 0, "bind");
		int c;
		while ((c = accept4(lst, NULL, NULL, 0)) >= 0) /* earlier connections */
			close_rst(c);
		int C = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(connect(C, SA(dt), sizeof dt) == 0, "connect");
		raw_close(how, U);
		p = (struct pollfd){lst, POLLIN, 0};
		CHECK(poll(&p, 1, 2000) == 1, "no connection to accept");
		int Acc = accept(lst, NULL, NULL);
		CHECK(Acc == U, "%s: fd not reused by accept", w);
		CHECK(getopt_int(Acc, SOL_SOCKET, SO_REUSEADDR) == 0, "%s: stale SO_REUSEADDR on accepted", w);
		l = local_of(Acc);
		CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.10") && ntohs(l.sin_port) == 7001, "%s: accepted shows %s", w,
		      ipstr(l));
		CHECK(send(Acc, "a", 1, MSG_NOSIGNAL) == 1, "send on accepted");
		close_rst(Acc);
		close_rst(C);
	}
	/* close_range over several tracked sockets at once, then reuse: first fill the holes in the
	 * fd table so that the six sockets get consecutive numbers */
	int maxfd = 0, fillers[1024], nfill = 0;
	for (int f = 0; f < 1024; f++)
		if (fcntl(f, F_GETFD) >= 0)
			maxfd = f;
	for (;;) {
		int f = open("/dev/null", O_RDONLY);
		CHECK(f >= 0, "open");
		if (f > maxfd) {
			close(f);
			break;
		}
		fillers[nfill++] = f;
	}
	int fds[6];
	for (int i = 0; i < 6; i++) {
		fds[i] = socket(AF_INET, i & 1 ? SOCK_DGRAM : SOCK_STREAM, 0);
		CHECK(fds[i] >= 0, "socket");
		CHECK(setsockopt(fds[i], SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0, "setsockopt");
		CHECK(bind(fds[i], SA(src), sizeof src) == 0, "bind");
		if (i)
			CHECK(fds[i] == fds[i - 1] + 1, "fds not consecutive");
	}
	CHECK(close_range(fds[0], fds[5], 0) == 0, "close_range");
	int news[6];
	for (int i = 0; i < 6; i++) {
		news[i] = socket(AF_INET, i & 1 ? SOCK_STREAM : SOCK_DGRAM, 0);
		CHECK(news[i] == fds[i], "close_range: fd %d not reused (got %d)", fds[i], news[i]);
	}
	for (int i = 0; i < 6; i++) {
		int s = news[i];
		CHECK(getopt_int(s, SOL_SOCKET, SO_REUSEADDR) == 0, "close_range: stale SO_REUSEADDR on fd %d", s);
		struct sockaddr_in d = (i & 1) ? dt : du;
		CHECK(connect(s, SA(d), sizeof d) == 0, "close_range: connect fd %d", s);
		struct sockaddr_in l = local_of(s);
		CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.1"), "close_range: stale source %s", ipstr(l));
		if (i & 1)
			close_rst(s);
		else
			close(s);
	}
	for (int i = 0; i < nfill; i++)
		close(fillers[i]);
	/* drain the acceptor-less listener */
	int c;
	while ((c = accept4(lst, NULL, NULL, 0)) >= 0)
		close_rst(c);
	printf("OK closereuse: syscall(SYS_close), close_range; reuse by socket, open, accept\n");
	return 0;
}

/* ---------- a socket handed between threads ---------- */
static int hand_fd;
static struct sockaddr_in hand_seen;
static int hand_errno;

static void *h_bind(void *arg)
{
	int tcp = (int)(long)arg;
	hand_fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	struct sockaddr_in b = sin4("127.0.0.3", 0);
	if (hand_fd < 0 || bind(hand_fd, SA(b), sizeof b) != 0)
		hand_fd = -1;
	return NULL;
}

static void *h_name(void *arg)
{
	(void)arg;
	hand_seen = local_of(hand_fd);
	return NULL;
}

static void *h_connect(void *arg)
{
	int tcp = (int)(long)arg;
	struct sockaddr_in d = sin4("127.0.0.10", tcp ? 7001 : 7002);
	if (connect(hand_fd, SA(d), sizeof d) != 0) {
		hand_seen.sin_family = 0xfff0;
		hand_errno = errno;
	}
	return NULL;
}

static void in_thread(void *(*f)(void *), long arg)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, f, (void *)arg) == 0, "pthread_create");
	pthread_join(t, NULL);
}

static int test_handoff(void)
{
	tcp_listener("127.0.0.10", 7001);
	int sink = udp_sink("127.0.0.10", 7002);
	pthread_t a = start_acceptor(0);
	for (int tcp = 1; tcp >= 0; tcp--) {
		const char *w = tcp ? "TCP" : "UDP";
		/* bind in thread 1, connect in thread 2, check in main */
		in_thread(h_bind, tcp);
		CHECK(hand_fd >= 0, "%s: bind in thread", w);
		memset(&hand_seen, 0, sizeof hand_seen);
		in_thread(h_connect, tcp);
		errno = hand_errno;
		CHECK(hand_seen.sin_family != 0xfff0, "%s: connect in another thread", w);
		struct sockaddr_in l = local_of(hand_fd);
		CHECK(l.sin_addr.s_addr == inet_addr("127.0.0.3") && l.sin_port, "%s: source %s", w, ipstr(l));
		CHECK(send(hand_fd, "h", 1, MSG_NOSIGNAL) == 1, "%s: send in main", w);
		if (tcp)
			close_rst(hand_fd);
		else
			close(hand_fd);

		/* bind in thread 1, getsockname in thread 2 (port needed), connect in thread 3: same port */
		in_thread(h_bind, tcp);
		CHECK(hand_fd >= 0, "%s: bind in thread", w);
		in_thread(h_name, 0);
		struct sockaddr_in seen = hand_seen;
		CHECK(seen.sin_port != 0, "%s: getsockname in another thread shows port 0", w);
		in_thread(h_connect, tcp);
		errno = hand_errno;
		CHECK(hand_seen.sin_family != 0xfff0, "%s: connect in a third thread (after getsockname in another)", w);
		l = local_of(hand_fd);
		CHECK(l.sin_port == seen.sin_port && l.sin_addr.s_addr == seen.sin_addr.s_addr,
		      "%s: port changed between threads: %s then %s", w, ipstr(seen), ipstr(l));
		if (!tcp) {
			CHECK(send(hand_fd, "u", 1, 0) == 1, "send");
			struct pollfd p = {sink, POLLIN, 0};
			char buf[8];
			struct sockaddr_in from;
			socklen_t fl = sizeof from;
			while (poll(&p, 1, 2000) == 1 && recvfrom(sink, buf, sizeof buf, 0, SA(from), &fl) == 1) {
				if (from.sin_port == l.sin_port)
					break;
				fl = sizeof from;
				from.sin_port = 0;
			}
			CHECK(from.sin_port == l.sin_port && from.sin_addr.s_addr == l.sin_addr.s_addr,
			      "UDP: sink saw %s, socket says %s", ipstr(from), ipstr(l));
			close(hand_fd);
		} else {
			close_rst(hand_fd);
		}
	}
	stop_acceptor(a);
	printf("OK handoff: bind, getsockname, connect in different threads (TCP, UDP)\n");
	return 0;
}

/* A child made without fork handlers (_Fork, raw clone) changes a destination in its own memory
 * and connects: the UDP lock must check that destination, not what the parent's memory holds
 * (connectx reads it with process_vm_readv, which needs the child's own pid). The parent holds
 * every port (R = 10) to 127.0.0.1:6001 and its buffer says 6000: a lock that read the parent's
 * memory would find 6000 free and connect a duplicate 4-tuple; the right answer is EAGAIN. */
static struct sockaddr_in rawfork_dst;

static int rawfork_child(void)
{
	rawfork_dst.sin_port = htons(6001);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	errno = 0;
	int r = connect(fd, SA(rawfork_dst), sizeof rawfork_dst);
	int e = errno;
	struct sockaddr_in peer;
	socklen_t pl = sizeof peer;
	int connected = r == 0 && getpeername(fd, SA(peer), &pl) == 0;
	printf("child: connect to 6001 -> %d errno %d%s%s\n", r, e, connected ? ", peer " : "",
	       connected ? ipstr(peer) : "");
	return r < 0 && e == EAGAIN ? 0 : 1;
}

static int test_rawfork(void)
{
	int held[10];
	struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(6001)};
	inet_pton(AF_INET, "127.0.0.1", &d.sin_addr);
	for (int i = 0; i < 10; i++) {
		held[i] = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK(connect(held[i], SA(d), sizeof d) == 0, "parent connect %d to 6001", i);
	}
	rawfork_dst = d;
	rawfork_dst.sin_port = htons(6000);
	for (int how = 0; how < 2; how++) {
		pid_t pid = how == 0 ? _Fork() : (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		CHECK(pid >= 0, "%s", how == 0 ? "_Fork" : "clone");
		if (pid == 0)
			_exit(rawfork_child());
		int st = 0;
		CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "%s child: the lock did not see the child's destination (a duplicate 4-tuple)",
		      how == 0 ? "_Fork" : "clone");
	}
	for (int i = 0; i < 10; i++)
		close(held[i]);
	printf("OK rawfork: _Fork and clone children get their own destination checked\n");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "usage: life threads|threads_capacity|fork|spawn|vforkclose|dup|closereuse|handoff|rawfork\n");
		return 2;
	}
	if (strcmp(argv[1], "child") == 0)
		return child_main();
	const char *test = argv[1];
	int big = strcmp(test, "threads") == 0 || strcmp(test, "fork") == 0 || strcmp(test, "dup") == 0 ||
		  strcmp(test, "closereuse") == 0 || strcmp(test, "handoff") == 0;
	/* R = 10 where capacity is part of the test, a wide range elsewhere */
	enter_netns(argv, big ? "20000" : "40000", big ? "59999" : "40009");
	alarm(120);
	raise_nofile();
	if (strcmp(test, "threads") == 0)
		return test_threads();
	if (strcmp(test, "threads_capacity") == 0)
		return test_threads_capacity();
	if (strcmp(test, "fork") == 0)
		return test_fork();
	if (strcmp(test, "spawn") == 0 || strcmp(test, "vforkclose") == 0)
		return test_spawn(argv[0][0] == '/' ? argv[0] : realpath(argv[0], NULL), strcmp(test, "vforkclose") == 0);
	if (strcmp(test, "dup") == 0)
		return test_dup();
	if (strcmp(test, "closereuse") == 0)
		return test_closereuse();
	if (strcmp(test, "handoff") == 0)
		return test_handoff();
	if (strcmp(test, "rawfork") == 0)
		return test_rawfork();
	fprintf(stderr, "unknown test %s\n", test);
	return 2;
}
