/* The static C client of tests/supervise.rs (built there with `cc -static`: no ELF interpreter,
 * so a preload never loads; `connectx run` supervises it).
 *
 *   client PROTO MODE SRC COUNT THREADS DST:PORT[,DST:PORT...]
 *     PROTO tcp|udp; MODE bind0 (bind(SRC, 0) then connect), port:P (bind(SRC, P)), plain
 *     (connect only). COUNT connections round-robin over the destinations; THREADS threads
 *     start at once (a barrier) and share the count; one thread stops at its first failure.
 *     Each connection echoes a payload of its own. One line:
 *     opened=K failed=F failed_step=bind|connect|echo|none errno=NAME echo_ok=A dup_tuples=D
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int tcp, mode_bind, fixport, count, nthreads, ndst;
static struct sockaddr_in src, dst[8];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start;
static int next, opened, failed, echo_ok, stop;
static char step[16] = "none", errname[32] = "none";
static unsigned long long tuples[4096];
static int ntuples;

static const char *name(int e) {
	switch (e) {
	case EADDRINUSE: return "EADDRINUSE";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case EAGAIN: return "EAGAIN";
	case ENOSYS: return "ENOSYS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EINVAL: return "EINVAL";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return "other";
	}
}

static void fail(const char *s, int e) {
	pthread_mutex_lock(&mu);
	failed++;
	if (!strcmp(step, "none")) {
		snprintf(step, sizeof step, "%s", s);
		snprintf(errname, sizeof errname, "%s", name(e));
	}
	pthread_mutex_unlock(&mu);
}

static void *run(void *arg) {
	(void)arg;
	pthread_barrier_wait(&start);
	for (;;) {
		pthread_mutex_lock(&mu);
		if (stop || next >= count) { pthread_mutex_unlock(&mu); return NULL; }
		int i = next++;
		pthread_mutex_unlock(&mu);
		int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
		struct timeval tv = { 5, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		struct sockaddr_in s = src;
		s.sin_port = htons(fixport);
		if (mode_bind && bind(fd, (void *)&s, sizeof s)) { fail("bind", errno); close(fd); if (nthreads == 1) stop = 1; continue; }
		if (connect(fd, (void *)&dst[i % ndst], sizeof dst[0])) { fail("connect", errno); close(fd); if (nthreads == 1) stop = 1; continue; }
		char msg[64], buf[64];
		int n = snprintf(msg, sizeof msg, "c-%d-%d\n", getpid(), i);
		if (send(fd, msg, n, 0) != n || recv(fd, buf, sizeof buf, 0) != n || memcmp(buf, msg, n)) { fail("echo", errno); continue; }
		struct sockaddr_in l; socklen_t ll = sizeof l;
		getsockname(fd, (void *)&l, &ll);
		pthread_mutex_lock(&mu);
		opened++; echo_ok++;
		if (ntuples < 4096) tuples[ntuples++] = (unsigned long long)l.sin_addr.s_addr << 32 | (unsigned)ntohs(l.sin_port) << 16 | (unsigned)(i % ndst);
		pthread_mutex_unlock(&mu);
		/* kept open: the ports stay held */
	}
}

int main(int argc, char **argv) {
	if (argc < 7) { fprintf(stderr, "usage: client PROTO MODE SRC COUNT THREADS DSTS\n"); return 2; }
	tcp = !strcmp(argv[1], "tcp");
	mode_bind = strcmp(argv[2], "plain") != 0;
	if (!strncmp(argv[2], "port:", 5)) fixport = atoi(argv[2] + 5);
	src.sin_family = AF_INET; inet_pton(AF_INET, argv[3], &src.sin_addr);
	count = atoi(argv[4]); nthreads = atoi(argv[5]);
	for (char *t = strtok(argv[6], ","); t && ndst < 8; t = strtok(NULL, ",")) {
		char *c = strchr(t, ':'); *c = 0;
		dst[ndst].sin_family = AF_INET; dst[ndst].sin_port = htons(atoi(c + 1));
		inet_pton(AF_INET, t, &dst[ndst].sin_addr); ndst++;
	}
	pthread_t th[64];
	pthread_barrier_init(&start, NULL, nthreads);
	for (int i = 0; i < nthreads && i < 64; i++) pthread_create(&th[i], NULL, run, NULL);
	for (int i = 0; i < nthreads && i < 64; i++) pthread_join(th[i], NULL);
	int dups = 0;
	for (int i = 0; i < ntuples; i++) for (int j = 0; j < i; j++) if (tuples[i] == tuples[j]) { dups++; break; }
	printf("opened=%d failed=%d failed_step=%s errno=%s echo_ok=%d dup_tuples=%d\n", opened, failed, step, errname, echo_ok, dups);
	return 0;
}
