/* connectx differential scenarios.
 *
 * Build: cc -O1 -Wall -o scenarios tests/diff/scenarios.c -lpthread
 * Run:   ./scenarios [substring]   (optionally only scenarios whose name contains it)
 *
 * Enters its own network namespace (see common.h), sets ip_local_port_range
 * to 40000-40009, starts listeners and UDP peers on 127.0.0.1, 127.0.0.2 and
 * ::1, then runs every scenario in a forked child (a crash or a hang becomes a
 * line of output instead of ending the run) and prints one line per scenario:
 *
 *   name: step=result step=result ...
 *
 * A result is the return value, or -1:ERRNO_NAME. "!errno=X" after a success
 * means errno was changed by a call that succeeded (it is set to EDOM before
 * every call). Addresses are printed as the program sees them; ports inside
 * the namespace range are the kernel's choice and are printed as E1, E2, ...
 * in order of first appearance within the scenario (so equal ports stay
 * equal), other ports as their number. File descriptor numbers are printed
 * as "fd". The output is the same on every run against the same kernel.
 */
#include "common.h"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif
#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

#define RANGE_LO 40000
#define RANGE_HI 40009
#define PORT_TCP 7001
#define PORT_UDP 7002
#define PORT_TFO 7003
#define PORT_CLOSED 7009
#define UNIX_NAME "cxdiff-listener"

/* ---------- servers (created before the scenarios, inherited by children) */
static int tl4a, tl4b, tl6, tfo4, tfo6, us4a, us4b, us6, ul, tll, ull;

/* ---------- output line ---------- */
static char line[16384];
static size_t linelen;
static int eph[64];
static int neph;
static int port_base; /* fixed ports for the current scenario */
static int hide_ports; /* print ports as "*" (ping idents) */
static int anon_eph;   /* print ephemeral ports as "E" (kernel may or may not re-pick one) */

static void add(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (linelen < sizeof line)
		linelen += vsnprintf(line + linelen, sizeof line - linelen, fmt, ap);
	va_end(ap);
	if (linelen >= sizeof line)
		linelen = sizeof line - 1;
}

static const char *ename(int e)
{
	static char buf[16];
	const char *n = strerrorname_np(e);
	if (n)
		return n;
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

static void rec(const char *label, long r, int e)
{
	if (r < 0)
		add(" %s=%ld:%s", label, r, ename(e));
	else
		add(" %s=%ld", label, r);
	if (r >= 0 && e != EDOM)
		add("!errno=%s", ename(e));
}

#define DO(label, expr)                                                        \
	({                                                                     \
		errno = EDOM;                                                  \
		long _r = (long)(expr);                                        \
		int _e = errno;                                                \
		rec(label, _r, _e);                                            \
		errno = _e;                                                    \
		_r;                                                            \
	})

#define DOFD(label, expr)                                                      \
	({                                                                     \
		errno = EDOM;                                                  \
		long _r = (long)(expr);                                        \
		int _e = errno;                                                \
		if (_r >= 0) {                                                 \
			add(" %s=fd", label);                                  \
			if (_e != EDOM)                                        \
				add("!errno=%s", ename(_e));                   \
		} else                                                         \
			rec(label, _r, _e);                                    \
		errno = _e;                                                    \
		(int)_r;                                                       \
	})

static const char *fport(int port, char *buf)
{
	if (hide_ports) {
		strcpy(buf, "*");
	} else if (anon_eph && port >= RANGE_LO && port <= RANGE_HI) {
		strcpy(buf, "E");
	} else if (port >= RANGE_LO && port <= RANGE_HI) {
		int i;
		for (i = 0; i < neph; i++)
			if (eph[i] == port)
				break;
		if (i == neph && neph < 64)
			eph[neph++] = port;
		sprintf(buf, "E%d", i + 1);
	} else {
		sprintf(buf, "%d", port);
	}
	return buf;
}

static const char *fmt_sa(const struct sockaddr *sa, socklen_t len, char *out, size_t outsz)
{
	char ip[INET6_ADDRSTRLEN], pb[16];
	if (len < sizeof(sa_family_t)) {
		snprintf(out, outsz, "len%u", (unsigned)len);
		return out;
	}
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *s = (const void *)sa;
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
		snprintf(out, outsz, "%s:%s/%u", ip, fport(ntohs(s->sin_port), pb), (unsigned)len);
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *s = (const void *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
		snprintf(out, outsz, "[%s%%%u]:%s/%u/fl%u", ip, s->sin6_scope_id,
			 fport(ntohs(s->sin6_port), pb), (unsigned)len, ntohl(s->sin6_flowinfo));
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *s = (const void *)sa;
		size_t plen = len - offsetof(struct sockaddr_un, sun_path);
		if (len <= offsetof(struct sockaddr_un, sun_path))
			snprintf(out, outsz, "unix:unnamed/%u", (unsigned)len);
		else if (s->sun_path[0] == 0)
			snprintf(out, outsz, "unix:@%.*s/%u", (int)plen - 1, s->sun_path + 1, (unsigned)len);
		else
			snprintf(out, outsz, "unix:%s/%u", s->sun_path, (unsigned)len);
		break;
	}
	case AF_NETLINK: {
		const struct sockaddr_nl *s = (const void *)sa;
		snprintf(out, outsz, "nl:pid=%s:groups=%u/%u", s->nl_pid ? "AUTO" : "0", s->nl_groups,
			 (unsigned)len);
		break;
	}
	case AF_PACKET: {
		const struct sockaddr_ll *s = (const void *)sa;
		snprintf(out, outsz, "ll:if=%d:proto=0x%x:type=%u/%u", s->sll_ifindex, ntohs(s->sll_protocol),
			 s->sll_hatype, (unsigned)len);
		break;
	}
	default:
		snprintf(out, outsz, "af%d/%u", sa->sa_family, (unsigned)len);
	}
	return out;
}

static void gsn(const char *label, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char buf[160];
	memset(&ss, 0, sizeof ss);
	errno = EDOM;
	int r = getsockname(fd, (struct sockaddr *)&ss, &len);
	int e = errno;
	if (r < 0)
		rec(label, r, e);
	else {
		add(" %s=%s", label, fmt_sa((struct sockaddr *)&ss, len, buf, sizeof buf));
		if (e != EDOM)
			add("!errno=%s", ename(e));
	}
}

static void gpn(const char *label, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char buf[160];
	memset(&ss, 0, sizeof ss);
	errno = EDOM;
	int r = getpeername(fd, (struct sockaddr *)&ss, &len);
	int e = errno;
	if (r < 0)
		rec(label, r, e);
	else {
		add(" %s=%s", label, fmt_sa((struct sockaddr *)&ss, len, buf, sizeof buf));
		if (e != EDOM)
			add("!errno=%s", ename(e));
	}
}

static void gopt(const char *label, int fd, int level, int name)
{
	int v = -7;
	socklen_t l = sizeof v;
	errno = EDOM;
	int r = getsockopt(fd, level, name, &v, &l);
	int e = errno;
	if (r < 0)
		rec(label, r, e);
	else {
		add(" %s=%d/%u", label, v, (unsigned)l);
		if (e != EDOM)
			add("!errno=%s", ename(e));
	}
}

static int sopt(const char *label, int fd, int level, int name, int v)
{
	return DO(label, setsockopt(fd, level, name, &v, sizeof v));
}

/* The three options connectx changes behind the program's back. */
static void opts3(const char *pfx, int fd)
{
	char l[64];
	snprintf(l, sizeof l, "%sra", pfx);
	gopt(l, fd, SOL_SOCKET, SO_REUSEADDR);
	snprintf(l, sizeof l, "%srp", pfx);
	gopt(l, fd, SOL_SOCKET, SO_REUSEPORT);
	snprintf(l, sizeof l, "%snp", pfx);
	gopt(l, fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
}

static void flags(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	int fdf = fcntl(fd, F_GETFD);
	add(" nonblock=%d cloexec=%d", fl >= 0 && (fl & O_NONBLOCK) ? 1 : 0, fdf >= 0 && (fdf & FD_CLOEXEC) ? 1 : 0);
	gopt("type", fd, SOL_SOCKET, SO_TYPE);
	gopt("proto", fd, SOL_SOCKET, SO_PROTOCOL);
}

/* ---------- addresses ---------- */
typedef struct {
	struct sockaddr_storage ss;
	socklen_t len;
} addr_t;

#define SA(a) ((struct sockaddr *)&(a).ss)

static addr_t a4(const char *ip, int port)
{
	addr_t a;
	memset(&a, 0, sizeof a);
	struct sockaddr_in *s = (void *)&a.ss;
	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	inet_pton(AF_INET, ip, &s->sin_addr);
	a.len = sizeof *s;
	return a;
}

static addr_t a6(const char *ip, int port)
{
	addr_t a;
	memset(&a, 0, sizeof a);
	struct sockaddr_in6 *s = (void *)&a.ss;
	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &s->sin6_addr);
	a.len = sizeof *s;
	return a;
}

enum { F4, F6, F46 };
static const char *famname[] = {"4", "6", "46"};

static int fdomain(int fam) { return fam == F4 ? AF_INET : AF_INET6; }

static addr_t dst(int fam, int port)
{
	if (fam == F4)
		return a4("127.0.0.1", port);
	if (fam == F6)
		return a6("::1", port);
	return a6("::ffff:127.0.0.1", port);
}

static addr_t dst2(int fam, int port)
{
	if (fam == F4)
		return a4("127.0.0.2", port);
	if (fam == F6)
		return a6("::1", port); /* only one v6 loopback address */
	return a6("::ffff:127.0.0.2", port);
}

static addr_t src_ip(int fam, int port)
{
	if (fam == F4)
		return a4("127.0.0.1", port);
	if (fam == F6)
		return a6("::1", port);
	return a6("::ffff:127.0.0.1", port);
}

static addr_t src_wild(int fam, int port)
{
	if (fam == F4)
		return a4("0.0.0.0", port);
	return a6("::", port);
}

/* Returns 1 when both name the same IPv4/IPv6 endpoint (v4-mapped == v4). */
static int endpoint(const struct sockaddr_storage *ss, unsigned char ip[16], int *port)
{
	memset(ip, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &s->sin_addr, 4);
		*port = ntohs(s->sin_port);
		return 1;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;
		memcpy(ip, &s->sin6_addr, 16);
		*port = ntohs(s->sin6_port);
		return 1;
	}
	return 0;
}

static int same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	unsigned char ia[16], ib[16];
	int pa, pb;
	static const unsigned char any4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
	static const unsigned char any6[16] = {0};
	if (!endpoint(a, ia, &pa) || !endpoint(b, ib, &pb))
		return 0;
	/* a wildcard local address (b is the program's own getsockname) matches any */
	if (!memcmp(ib, any4, 16) || !memcmp(ib, any6, 16))
		return pa == pb;
	return pa == pb && memcmp(ia, ib, 16) == 0;
}

/* ---------- helpers ---------- */
static void close_rst(int fd)
{
	int type = 0;
	socklen_t l = sizeof type;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM) {
		struct linger lg = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	close(fd);
}

static void drain(void)
{
	int tl[] = {tl4a, tl4b, tl6, tfo4, tfo6, tll};
	for (size_t i = 0; i < sizeof tl / sizeof tl[0]; i++) {
		int c;
		while ((c = accept4(tl[i], NULL, NULL, SOCK_NONBLOCK)) >= 0)
			close_rst(c);
	}
	int ul4[] = {us4a, us4b, us6, ull};
	char buf[256];
	for (size_t i = 0; i < sizeof ul4 / sizeof ul4[0]; i++)
		while (recv(ul4[i], buf, sizeof buf, MSG_DONTWAIT) >= 0 || errno == ECONNREFUSED)
			;
	int c;
	while ((c = accept4(ul, NULL, NULL, SOCK_NONBLOCK)) >= 0)
		close(c);
}

static const char *revents(short r, char *buf)
{
	buf[0] = 0;
	if (r & POLLIN)
		strcat(buf, "IN");
	if (r & POLLOUT)
		strcat(buf, "OUT");
	if (r & POLLERR)
		strcat(buf, "ERR");
	if (r & POLLHUP)
		strcat(buf, "HUP");
	if (!buf[0])
		strcpy(buf, "none");
	return buf;
}

/* After EINPROGRESS: wait for the handshake, print poll result and SO_ERROR. */
static void wait_connected(int fd)
{
	struct pollfd p = {fd, POLLOUT, 0};
	char b[32];
	int r = poll(&p, 1, 3000);
	add(" poll=%d:%s", r, revents(p.revents, b));
	gopt("soerr", fd, SOL_SOCKET, SO_ERROR);
}

static int wait_in(int fd, int ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	return poll(&p, 1, ms);
}

/* Accept on lfd the connection whose peer is `me` (others are closed). */
static int accept_from(int lfd, const struct sockaddr_storage *me)
{
	for (int tries = 0; tries < 64; tries++) {
		if (wait_in(lfd, 3000) <= 0)
			return -1;
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		int c = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK);
		if (c < 0)
			continue;
		if (same_endpoint(&ss, me)) {
			char buf[160];
			add(" srv_peer=%s", fmt_sa((struct sockaddr *)&ss, len, buf, sizeof buf));
			return c;
		}
		close_rst(c);
	}
	return -1;
}

/* Send "ping" to the server socket srv, check who the server sees, reply. */
static void exchange(int s, int tcp, int srv)
{
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	char buf[64];
	memset(&me, 0, sizeof me);
	if (getsockname(s, (struct sockaddr *)&me, &ml) != 0) {
		add(" xchg=skip");
		return;
	}
	if (DO("send", send(s, "ping", 4, MSG_NOSIGNAL)) != 4)
		return;
	if (tcp) {
		int a = accept_from(srv, &me);
		if (a < 0) {
			add(" srv=none");
			return;
		}
		wait_in(a, 3000);
		add(" srv_got=%ld", (long)recv(a, buf, sizeof buf, MSG_DONTWAIT));
		send(a, "pong", 4, MSG_NOSIGNAL);
		wait_in(s, 3000);
		DO("reply", recv(s, buf, sizeof buf, MSG_DONTWAIT));
		close_rst(a);
	} else {
		for (int tries = 0; tries < 64; tries++) {
			if (wait_in(srv, 3000) <= 0) {
				add(" srv=none");
				return;
			}
			struct sockaddr_storage ss;
			socklen_t len = sizeof ss;
			long n = recvfrom(srv, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
			if (n < 0)
				continue;
			if (!same_endpoint(&ss, &me))
				continue;
			char b2[160];
			add(" srv_from=%s srv_got=%ld", fmt_sa((struct sockaddr *)&ss, len, b2, sizeof b2), n);
			sendto(srv, "pong", 4, 0, (struct sockaddr *)&ss, len);
			wait_in(s, 3000);
			DO("reply", recv(s, buf, sizeof buf, MSG_DONTWAIT));
			return;
		}
		add(" srv=none");
	}
}

static int tcp_srv(int fam) { return fam == F6 ? tl6 : tl4a; }
static int udp_srv(int fam) { return fam == F6 ? us6 : us4a; }

static int P(int i) { return port_base + i; }

/* ---------- scenario runner ---------- */
static const char *only;
static int nscen;

static int run_begin(const char *name)
{
	if (only && !strstr(name, only))
		return 0;
	nscen++;
	port_base = 10000 + nscen * 4; /* fixed ports 10004..~11200: away from 7001-7009 and the range */
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		cx_die("fork");
	if (pid == 0) {
		alarm(20);
		linelen = 0;
		neph = 0;
		hide_ports = 0;
		anon_eph = 0;
		add("%s:", name);
		return 1;
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st))
		printf("%s: CRASHED %s\n", name, WTERMSIG(st) == SIGALRM ? "TIMEOUT" : sigabbrev_np(WTERMSIG(st)));
	else if (WEXITSTATUS(st) != 0)
		printf("%s: EXIT %d\n", name, WEXITSTATUS(st));
	fflush(stdout);
	return 0;
}

static void run_end(void)
{
	add("\n");
	if (write(1, line, linelen) < 0)
		_exit(3);
	drain();
	_exit(0);
}

#define RUN(name, call)                                                        \
	do {                                                                   \
		if (run_begin(name)) {                                         \
			call;                                                  \
			run_end();                                             \
		}                                                              \
	} while (0)

/* ---------- the cross product ---------- */
enum { NB_BLOCK, NB_SOCK, NB_FIONBIO };
static const char *nbname[] = {"block", "nonblock", "fionbio"};
enum { BM_NONE, BM_IP0, BM_WILD0, BM_IPP };
static const char *bmname[] = {"unbound", "bindip0", "bindwild0", "bindipP"};

static void generic(int tcp, int fam, int nb, int bm)
{
	int s = DOFD("socket", socket(fdomain(fam), (tcp ? SOCK_STREAM : SOCK_DGRAM) | (nb == NB_SOCK ? SOCK_NONBLOCK : 0), 0));
	if (s < 0)
		return;
	if (nb == NB_FIONBIO) {
		int one = 1;
		DO("fionbio", ioctl(s, FIONBIO, &one));
	}
	if (bm != BM_NONE) {
		addr_t b = bm == BM_IP0 ? src_ip(fam, 0) : bm == BM_WILD0 ? src_wild(fam, 0) : src_ip(fam, P(0));
		DO("bind", bind(s, SA(b), b.len));
		opts3("b_", s);
	}
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	long r = DO("connect", connect(s, SA(d), d.len));
	if (r < 0 && errno == EINPROGRESS)
		wait_connected(s);
	gsn("sn", s);
	gpn("pn", s);
	opts3("", s);
	flags(s);
	DO("connect2", connect(s, SA(d), d.len));
	gsn("sn2", s);
	exchange(s, tcp, tcp ? tcp_srv(fam) : udp_srv(fam));
	close_rst(s);
}

/* ---------- specific scenarios ---------- */

/* bind(ip,0), getsockname before connect: the port the program saw must stay. */
static void gsn_after_bind0(int tcp, int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn_bound", s);
	opts3("", s);
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	gpn("pn", s);
	exchange(s, tcp, tcp ? tcp_srv(fam) : udp_srv(fam));
	close_rst(s);
}

/* bind(wildcard,0), getsockname, connect */
static void gsn_after_wild0(int tcp, int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b = src_wild(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn_bound", s);
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	close_rst(s);
}

static void listen_scn(int fam, int bm)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_STREAM, 0));
	if (bm != BM_NONE) {
		addr_t b = bm == BM_IP0 ? src_ip(fam, 0) : bm == BM_WILD0 ? src_wild(fam, 0) : src_ip(fam, P(0));
		DO("bind", bind(s, SA(b), b.len));
		opts3("b_", s);
	}
	DO("listen", listen(s, 16));
	gsn("sn", s);
	gpn("pn", s);
	opts3("", s);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(s, (struct sockaddr *)&ss, &len) != 0)
		return;
	/* connect a client to it (wildcard -> loopback of the same family) */
	addr_t d;
	memcpy(&d.ss, &ss, sizeof ss);
	d.len = len;
	int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
					   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	if (bm == BM_WILD0 || bm == BM_NONE)
		d = dst(fam, port);
	int c = DOFD("csocket", socket(fdomain(fam), SOCK_STREAM, 0));
	DO("cconnect", connect(c, SA(d), d.len));
	gsn("csn", c);
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	getsockname(c, (struct sockaddr *)&me, &ml);
	int a = accept_from(s, &me);
	if (a >= 0) {
		gsn("asn", a);
		gpn("apn", a);
		opts3("a_", a);
		close_rst(a);
	}
	close_rst(c);
	close(s);
}

static void bind_again(int tcp, int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	DO("bind_same", bind(s, SA(b), b.len));
	addr_t b2 = src_ip(fam, P(0));
	DO("bind_port", bind(s, SA(b2), b2.len));
	if (fam == F4) {
		addr_t b3 = a4("127.0.0.2", 0);
		DO("bind_other", bind(s, SA(b3), b3.len));
	}
	gsn("sn", s);
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn2", s);
	close_rst(s);
}

static void bind0_refused(int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_STREAM, 0));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(fam, PORT_CLOSED);
	DO("connect", connect(s, SA(d), d.len));
	gopt("soerr", s, SOL_SOCKET, SO_ERROR);
	gpn("pn", s);
	addr_t d2 = dst(fam, PORT_TCP);
	DO("connect2", connect(s, SA(d2), d2.len));
	gsn("sn2", s);
	gpn("pn2", s);
	close_rst(s);
}

static void refused(int tcp, int fam, int nb)
{
	int s = DOFD("socket", socket(fdomain(fam), (tcp ? SOCK_STREAM : SOCK_DGRAM) | (nb ? SOCK_NONBLOCK : 0), 0));
	addr_t d = dst(fam, PORT_CLOSED);
	long r = DO("connect", connect(s, SA(d), d.len));
	if (r < 0 && errno == EINPROGRESS)
		wait_connected(s);
	gsn("sn", s);
	if (!tcp) {
		DO("send", send(s, "x", 1, 0));
		wait_in(s, 2000);
		DO("recv", recv(s, line + sizeof line - 8, 1, MSG_DONTWAIT));
		DO("send2", send(s, "x", 1, 0));
	}
	close_rst(s);
}

static void tfo(int fam, int nb, int bm, int twice)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_STREAM | (nb ? SOCK_NONBLOCK : 0), 0));
	if (bm != BM_NONE) {
		addr_t b = bm == BM_IP0 ? src_ip(fam, 0) : src_ip(fam, P(0));
		DO("bind", bind(s, SA(b), b.len));
	}
	addr_t d = dst(fam, PORT_TFO);
	long r = DO("sendto_fo", sendto(s, "hello", 5, MSG_FASTOPEN, SA(d), d.len));
	if (r < 0 && errno == EINPROGRESS)
		wait_connected(s);
	gsn("sn", s);
	gpn("pn", s);
	opts3("", s);
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	int a = -1;
	if (getsockname(s, (struct sockaddr *)&me, &ml) == 0) {
		a = accept_from(fam == F6 ? tfo6 : tfo4, &me);
		if (a >= 0) {
			char buf[16];
			wait_in(a, 2000);
			add(" srv_got=%ld", (long)recv(a, buf, sizeof buf, MSG_DONTWAIT));
		}
	}
	if (twice) { /* (the first connection stays open: its port cannot be picked again) */ /* second one: the cookie is cached now, data goes in the SYN */
		int s2 = DOFD("socket2", socket(fdomain(fam), SOCK_STREAM | (nb ? SOCK_NONBLOCK : 0), 0));
		r = DO("sendto_fo2", sendto(s2, "hello", 5, MSG_FASTOPEN, SA(d), d.len));
		if (r < 0 && errno == EINPROGRESS)
			wait_connected(s2);
		gsn("sn2", s2);
		DO("sendto_fo3", sendto(s2, "again", 5, MSG_FASTOPEN, SA(d), d.len));
		close_rst(s2);
	}
	close_rst(s);
	if (a >= 0)
		close_rst(a);
}

static void tfo_misc(void)
{
	/* MSG_FASTOPEN on a connected socket, without address, on UDP */
	int s = DOFD("socket", socket(AF_INET, SOCK_STREAM, 0));
	addr_t d = dst(F4, PORT_TCP);
	DO("connect", connect(s, SA(d), d.len));
	DO("sendto_fo_connected", sendto(s, "x", 1, MSG_FASTOPEN, SA(d), d.len));
	close_rst(s);
	s = DOFD("socket2", socket(AF_INET, SOCK_STREAM, 0));
	DO("sendto_fo_noaddr", sendto(s, "x", 1, MSG_FASTOPEN, NULL, 0));
	DO("sendto_fo_short", sendto(s, "x", 1, MSG_FASTOPEN, SA(d), 4));
	DO("sendto_fo_null", sendto(s, "x", 1, MSG_FASTOPEN, NULL, sizeof(struct sockaddr_in)));
	gsn("sn", s);
	close_rst(s);
	s = DOFD("usocket", socket(AF_INET, SOCK_DGRAM, 0));
	addr_t du = dst(F4, PORT_UDP);
	DO("udp_sendto_fo", sendto(s, "x", 1, MSG_FASTOPEN, SA(du), du.len));
	gsn("usn", s);
	close(s);
}

/* UDP sendto with a destination, on a socket bound to port 0 or unbound. */
static void udp_sendto(int fam, int bm, int how)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_DGRAM, 0));
	if (bm != BM_NONE) {
		addr_t b = bm == BM_IP0 ? src_ip(fam, 0) : bm == BM_WILD0 ? src_wild(fam, 0) : src_ip(fam, P(0));
		DO("bind", bind(s, SA(b), b.len));
	}
	addr_t d = dst(fam, PORT_UDP);
	struct iovec iov = {"ping", 4};
	struct msghdr mh = {.msg_name = &d.ss, .msg_namelen = d.len, .msg_iov = &iov, .msg_iovlen = 1};
	struct mmsghdr mm[2] = {{.msg_hdr = mh}, {.msg_hdr = mh}};
	if (how == 0)
		DO("sendto", sendto(s, "ping", 4, 0, SA(d), d.len));
	else if (how == 1)
		DO("sendmsg", sendmsg(s, &mh, 0));
	else
		DO("sendmmsg", sendmmsg(s, mm, 2, 0));
	gsn("sn", s);
	gpn("pn", s);
	opts3("", s);
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	getsockname(s, (struct sockaddr *)&me, &ml);
	int srv = udp_srv(fam);
	for (int tries = 0; tries < 64; tries++) {
		if (wait_in(srv, 3000) <= 0) {
			add(" srv=none");
			break;
		}
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		char buf[16], b2[160];
		long n = recvfrom(srv, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
		if (n < 0 || !same_endpoint(&ss, &me))
			continue;
		add(" srv_from=%s", fmt_sa((struct sockaddr *)&ss, len, b2, sizeof b2));
		sendto(srv, "pong", 4, 0, (struct sockaddr *)&ss, len);
		wait_in(s, 3000);
		struct sockaddr_storage from;
		socklen_t fl = sizeof from;
		errno = EDOM;
		n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		rec("recvfrom", n, errno);
		if (n >= 0)
			add(" from=%s", fmt_sa((struct sockaddr *)&from, fl, b2, sizeof b2));
		break;
	}
	close(s);
}

static void udp_bind0_nodest(int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_DGRAM, 0));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	DO("send", send(s, "x", 1, 0));
	DO("sendto_null", sendto(s, "x", 1, 0, NULL, 0));
	char buf[8];
	DO("recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
	gsn("sn", s);
	addr_t d = dst(fam, PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn2", s);
	close(s);
}

/* The UDP server `srv` sends "hi" to socket s's own address; waits until s can read. */
static void peer_sends(int s, int srv)
{
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	getsockname(s, (struct sockaddr *)&me, &ml);
	add(" peer_sent=%d", (int)sendto(srv, "hi", 2, 0, (struct sockaddr *)&me, ml));
	wait_in(s, 2000);
}

static void udp_bind0_recv_first(void)
{
	/* a receiver: bind(ip,0), recv (needs its port), getsockname, then a peer sends to it */
	int s = DOFD("socket", socket(AF_INET, SOCK_DGRAM, 0));
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	char buf[8];
	DO("recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
	gsn("sn", s);
	peer_sends(s, us4a);
	DO("recv2", recv(s, buf, sizeof buf, MSG_DONTWAIT));
	close(s);
}

static void disconnect(int tcp, int fam, int bm)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	if (bm != BM_NONE) {
		addr_t b = bm == BM_IP0 ? src_ip(fam, 0) : bm == BM_WILD0 ? src_wild(fam, 0) : src_ip(fam, P(0));
		DO("bind", bind(s, SA(b), b.len));
	}
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	struct sockaddr un = {.sa_family = AF_UNSPEC};
	DO("unspec", connect(s, &un, sizeof un));
	gsn("sn_after", s);
	gpn("pn_after", s);
	opts3("", s);
	addr_t d2 = dst2(fam, tcp ? PORT_TCP : PORT_UDP);
	anon_eph = 1; /* a released port may or may not be picked again */
	DO("reconnect", connect(s, SA(d2), d2.len));
	gsn("sn2", s);
	gpn("pn2", s);
	close_rst(s);
}

/* Found by the fuzzer (tests/fuzz.rs). A connect refused after bind(ip,0): the kernel dropped
 * the port again, so the socket may bind anew. */
static void tcp_refused_then_rebind(int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_STREAM, 0));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(fam, PORT_CLOSED);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	DO("bind2", bind(s, SA(b), b.len));
	anon_eph = 1; /* a released port may or may not be picked again */
	gsn("sn2", s);
	close_rst(s);
}

/* MSG_FASTOPEN refused at once (an IPv4 address on an IPv6 socket): the socket keeps the
 * port bind(ip,0) gave it, and a second bind is refused. */
static void tfo_refused_keeps_port(void)
{
	int s = DOFD("socket", socket(AF_INET6, SOCK_STREAM, 0));
	addr_t b = src_ip(F6, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(F4, PORT_TFO);
	DO("sendto_fo_v4", sendto(s, "x", 1, MSG_FASTOPEN | MSG_DONTWAIT, SA(d), d.len));
	gsn("sn", s);
	DO("bind2", bind(s, SA(b), b.len));
	close_rst(s);
}

/* MSG_FASTOPEN on a listener changes none of its options: sockets it accepts inherit them. */
static void tfo_on_listener(void)
{
	int l = DOFD("socket", socket(AF_INET, SOCK_STREAM, 0));
	addr_t b = src_ip(F4, P(0));
	DO("bind", bind(l, SA(b), b.len));
	DO("listen", listen(l, 16));
	addr_t d = dst(F4, PORT_TFO);
	DO("sendto_fo_listener", sendto(l, "x", 1, MSG_FASTOPEN | MSG_DONTWAIT, SA(d), d.len));
	int c = DOFD("csocket", socket(AF_INET, SOCK_STREAM, 0));
	DO("cconnect", connect(c, SA(b), b.len));
	wait_in(l, 2000);
	int a = DOFD("accept", accept(l, NULL, NULL));
	opts3("a_", a);
	close_rst(c);
	close_rst(a);
	close_rst(l);
}

/* A datagram and an ICMP refusal queued before a disconnect stay readable after it, as the
 * kernel keeps them; the socket may then bind again. */
static void udp_disconnect_keeps_queue(int fam)
{
	char buf[8];
	struct sockaddr un = {.sa_family = AF_UNSPEC};
	int s = DOFD("socket", socket(fdomain(fam), SOCK_DGRAM, 0));
	addr_t d = dst(fam, PORT_CLOSED);
	DO("connect", connect(s, SA(d), d.len));
	DO("send", send(s, "x", 1, 0));
	wait_in(s, 2000);
	DO("unspec", connect(s, &un, sizeof un));
	DO("recv_refused", recv(s, buf, sizeof buf, MSG_DONTWAIT));
	addr_t d2 = dst(fam, PORT_UDP);
	DO("connect2", connect(s, SA(d2), d2.len));
	peer_sends(s, udp_srv(fam));
	DO("unspec2", connect(s, &un, sizeof un));
	DO("recv_data", recv(s, buf, sizeof buf, MSG_DONTWAIT));
	DO("recv_again", recv(s, buf, sizeof buf, MSG_DONTWAIT));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	close(s);
}

/* A fixed-port connect refused at once (an IPv6 address on an IPv4 socket) leaves the port as
 * exclusive as the program left it: another socket cannot bind it. */
static void tcp_fixed_connect_refused_at_once(void)
{
	int s = DOFD("socket", socket(AF_INET, SOCK_STREAM, 0));
	addr_t b = src_ip(F4, P(0));
	DO("bind", bind(s, SA(b), b.len));
	addr_t d6 = dst(F6, PORT_TCP);
	DO("connect_v6", connect(s, SA(d6), d6.len));
	opts3("", s);
	int t = DOFD("socket2", socket(AF_INET, SOCK_STREAM, 0));
	sopt("t_ra", t, SOL_SOCKET, SO_REUSEADDR, 1);
	DO("bind2", bind(t, SA(b), b.len));
	close_rst(t);
	close_rst(s);
}

/* A UDP socket disconnected with a datagram queued (connectx keeps its port), then used in a
 * way after which the kernel's socket has, or has not, a port again: a bind must get the
 * kernel's answer either way. */
static void udp_kept(int fam, int how)
{
	char buf[8];
	struct sockaddr un = {.sa_family = AF_UNSPEC};
	int s = DOFD("socket", socket(fdomain(fam), SOCK_DGRAM, 0));
	addr_t d = dst(fam, PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	peer_sends(s, udp_srv(fam));
	DO("unspec", connect(s, &un, sizeof un));
	if (how == 0) {
		struct sockaddr_in any = {.sin_family = AF_UNSPEC};
		DO("bind_unspec_any", bind(s, (struct sockaddr *)&any, sizeof any));
	} else if (how == 1) {
		char big[256] = {0};
		((struct sockaddr *)big)->sa_family = fdomain(fam);
		DO("connect_len200", connect(s, (struct sockaddr *)big, 200));
	} else if (how == 2) {
		DO("connect_efault", connect(s, (struct sockaddr *)8, 16));
	} else if (how == 3) {
		DO("send_nodest", sendto(s, "x", 1, MSG_DONTWAIT, NULL, 0));
	} else {
		sopt("v6only", s, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	}
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	/* After a send the kept port is the socket's own and the datagram is still there; after
	 * the others connectx put a fresh socket in place and it is gone (README limits), so only
	 * the answers above are compared. */
	if (how == 3)
		DO("recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
	close(s);
}

static void unspec_unconnected(int tcp)
{
	int s = DOFD("socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	struct sockaddr un = {.sa_family = AF_UNSPEC};
	DO("unspec", connect(s, &un, sizeof un));
	struct sockaddr_in un4 = {.sin_family = AF_UNSPEC};
	DO("unspec_in", connect(s, (struct sockaddr *)&un4, sizeof un4));
	DO("unspec_short", connect(s, &un, 1));
	gsn("sn", s);
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	DO("unspec2", connect(s, &un, sizeof un));
	gsn("sn2", s);
	close_rst(s);
}

static void connect_twice(int tcp, int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	addr_t d2 = dst2(fam, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	DO("connect_same", connect(s, SA(d), d.len));
	DO("connect_other", connect(s, SA(d2), d2.len));
	gsn("sn2", s);
	gpn("pn2", s);
	if (!tcp)
		exchange(s, 0, fam == F6 ? us6 : us4b);
	close_rst(s);
}

/* curl: sets IP_BIND_ADDRESS_NO_PORT itself, bind(ip,0), getsockname, connect */
static void prog_noport(int fam, int after)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_STREAM, 0));
	addr_t b = src_ip(fam, 0);
	if (!after)
		sopt("set_np", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	DO("bind", bind(s, SA(b), b.len));
	if (after)
		sopt("set_np", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	gsn("sn_bound", s);
	opts3("b_", s);
	int fl = fcntl(s, F_GETFL);
	DO("fcntl", fcntl(s, F_SETFL, fl | O_NONBLOCK));
	addr_t d = dst(fam, PORT_TCP);
	long r = DO("connect", connect(s, SA(d), d.len));
	if (r < 0 && errno == EINPROGRESS)
		wait_connected(s);
	gsn("sn", s);
	opts3("", s);
	DO("clear_np", setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &(int){0}, sizeof(int)));
	gopt("np2", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
	close_rst(s);
}

static void prog_noport_udp(void)
{
	int s = DOFD("socket", socket(AF_INET, SOCK_DGRAM, 0));
	sopt("set_np", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn_bound", s);
	addr_t d = dst(F4, PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	opts3("", s);
	exchange(s, 0, us4a);
	close(s);
}

static void prog_reuseaddr_fixed(int tcp)
{
	int s = DOFD("socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	sopt("set_ra", s, SOL_SOCKET, SO_REUSEADDR, 1);
	addr_t b = src_ip(F4, P(0));
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	opts3("", s);
	sopt("clear_ra", s, SOL_SOCKET, SO_REUSEADDR, 0);
	opts3("c_", s);
	close_rst(s);
}

static void prog_reuseport_bind0(int tcp)
{
	int s = DOFD("socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	sopt("set_rp", s, SOL_SOCKET, SO_REUSEPORT, 1);
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	opts3("", s);
	exchange(s, tcp, tcp ? tl4a : us4a);
	close_rst(s);
}

/* dig/libuv: SO_REUSEPORT, FIONBIO, SO_REUSEADDR 1 then 0, bind(0.0.0.0,0), connect, sendmmsg */
static void dig_pattern(int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_DGRAM, 0));
	sopt("set_rp", s, SOL_SOCKET, SO_REUSEPORT, 1);
	int one = 1;
	DO("fionbio", ioctl(s, FIONBIO, &one));
	sopt("set_ra", s, SOL_SOCKET, SO_REUSEADDR, 1);
	sopt("clear_ra", s, SOL_SOCKET, SO_REUSEADDR, 0);
	addr_t b = src_wild(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(fam, PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	opts3("", s);
	flags(s);
	struct iovec iov = {"query", 5};
	struct mmsghdr mm = {.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1}};
	DO("sendmmsg", sendmmsg(s, &mm, 1, 0));
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	getsockname(s, (struct sockaddr *)&me, &ml);
	int srv = udp_srv(fam);
	for (int i = 0; i < 64; i++) {
		if (wait_in(srv, 3000) <= 0)
			break;
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		char buf[16], b2[160];
		long n = recvfrom(srv, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
		if (n < 0 || !same_endpoint(&ss, &me))
			continue;
		add(" srv_from=%s srv_got=%ld", fmt_sa((struct sockaddr *)&ss, len, b2, sizeof b2), n);
		break;
	}
	close(s);
}

static void getsockopt_edges(int tcp, int bm, int set)
{
	int s = DOFD("socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	if (set) { /* the program's own values are 1 */
		sopt("set_ra", s, SOL_SOCKET, SO_REUSEADDR, 1);
		sopt("set_rp", s, SOL_SOCKET, SO_REUSEPORT, 1);
		sopt("set_np", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	}
	if (bm != BM_NONE) {
		addr_t b = bm == BM_IP0 ? src_ip(F4, 0) : src_ip(F4, P(0));
		DO("bind", bind(s, SA(b), b.len));
	}
	addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	int opts[3][2] = {{SOL_SOCKET, SO_REUSEADDR}, {SOL_SOCKET, SO_REUSEPORT}, {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT}};
	const char *on[3] = {"ra", "rp", "np"};
	for (int i = 0; i < 3; i++) {
		char lab[32];
		unsigned char c[8];
		socklen_t l;
		memset(c, 0xAA, sizeof c);
		l = 1;
		snprintf(lab, sizeof lab, "%s_len1", on[i]);
		errno = EDOM;
		long r = getsockopt(s, opts[i][0], opts[i][1], c, &l);
		rec(lab, r, errno);
		add("(l=%u,b=%02x%02x)", (unsigned)l, c[0], c[1]);
		memset(c, 0xAA, sizeof c);
		l = 0;
		snprintf(lab, sizeof lab, "%s_len0", on[i]);
		errno = EDOM;
		r = getsockopt(s, opts[i][0], opts[i][1], c, &l);
		rec(lab, r, errno);
		add("(l=%u,b=%02x)", (unsigned)l, c[0]);
		memset(c, 0xAA, sizeof c);
		l = 8;
		snprintf(lab, sizeof lab, "%s_len8", on[i]);
		errno = EDOM;
		r = getsockopt(s, opts[i][0], opts[i][1], c, &l);
		rec(lab, r, errno);
		add("(l=%u,b=%02x%02x%02x%02x%02x)", (unsigned)l, c[0], c[1], c[2], c[3], c[4]);
		l = (socklen_t)-1;
		snprintf(lab, sizeof lab, "%s_lenneg", on[i]);
		DO(lab, getsockopt(s, opts[i][0], opts[i][1], c, &l));
		l = 4;
		snprintf(lab, sizeof lab, "%s_nullval", on[i]);
		DO(lab, getsockopt(s, opts[i][0], opts[i][1], NULL, &l));
		snprintf(lab, sizeof lab, "%s_nulllen", on[i]);
		DO(lab, getsockopt(s, opts[i][0], opts[i][1], c, NULL));
	}
	close_rst(s);
}

static void setsockopt_edges(int tcp)
{
	int s = DOFD("socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	unsigned char c1 = 1;
	short sh = 1;
	int two = 2;
	DO("ra_len1", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &c1, 1));
	DO("ra_len2", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &sh, 2));
	DO("ra_null", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, NULL, 4));
	DO("ra_val2", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &two, 4));
	gopt("ra", s, SOL_SOCKET, SO_REUSEADDR);
	DO("rp_len1", setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &c1, 1));
	DO("rp_val2", setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &two, 4));
	gopt("rp", s, SOL_SOCKET, SO_REUSEPORT);
	DO("np_len1", setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &c1, 1));
	gopt("np", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
	DO("np_len0", setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &two, 0));
	DO("np_null", setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, NULL, 4));
	DO("np_val2", setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &two, 4));
	gopt("np2", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
	DO("np_val0", setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &(int){0}, 4));
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn", s);
	opts3("", s);
	close_rst(s);
}

static void local_port_range(int tcp, int bm)
{
	int s = DOFD("socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	int rng = (40006 << 16) | 40004;
	DO("set_range", setsockopt(s, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &rng, sizeof rng));
	if (bm != BM_NONE) {
		addr_t b = src_ip(F4, 0);
		DO("bind", bind(s, SA(b), b.len));
	}
	addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	if (getsockname(s, (struct sockaddr *)&me, &ml) == 0) {
		int p = ntohs(me.sin_port);
		add(" in_range=%d", p >= 40004 && p <= 40006);
	}
	gopt("range", s, IPPROTO_IP, IP_LOCAL_PORT_RANGE);
	close_rst(s);
}

/* Server semantics: exclusive fixed ports. */
static void server_exclusive(int tcp, int reuse)
{
	int a = DOFD("a_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	int b = DOFD("b_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	if (reuse) {
		sopt("a_ra", a, SOL_SOCKET, SO_REUSEADDR, 1);
		sopt("b_ra", b, SOL_SOCKET, SO_REUSEADDR, 1);
	}
	addr_t p = src_ip(F4, P(0));
	DO("a_bind", bind(a, SA(p), p.len));
	DO("b_bind", bind(b, SA(p), p.len));
	if (tcp) {
		DO("a_listen", listen(a, 4));
		int c = socket(AF_INET, SOCK_STREAM, 0);
		DO("c_bind", bind(c, SA(p), p.len));
		close(c);
		DO("b_listen", listen(b, 4));
	}
	addr_t w = src_wild(F4, P(0));
	int c = DOFD("w_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	DO("w_bind", bind(c, SA(w), w.len));
	close(c);
	opts3("a_", a);
	close(a);
	close(b);
}

/* bind(ip,P) on an idle server, then a client binds the same P and connects */
static void server_then_client(int tcp)
{
	int a = DOFD("srv_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t p = src_ip(F4, P(0));
	DO("srv_bind", bind(a, SA(p), p.len));
	if (tcp)
		DO("srv_listen", listen(a, 4));
	int c = DOFD("cli_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	DO("cli_bind", bind(c, SA(p), p.len));
	addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("cli_connect", connect(c, SA(d), d.len));
	gsn("cli_sn", c);
	close_rst(c);
	close(a);
}

/* a client connected from fixed port P; then a server wants P */
static void client_then_server(int tcp)
{
	int c = DOFD("cli_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t p = src_ip(F4, P(0));
	DO("cli_bind", bind(c, SA(p), p.len));
	addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("cli_connect", connect(c, SA(d), d.len));
	int a = DOFD("srv_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	DO("srv_bind", bind(a, SA(p), p.len));
	if (tcp)
		DO("srv_listen", listen(a, 4));
	gsn("srv_sn", a);
	close(a);
	close_rst(c);
}

/* The full 4-tuple use: bind(ip,P) twice, two destinations (capacity, intended). */
static void fixed_two_dests(int tcp, int fam, int same_dest)
{
	int a = DOFD("a_socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	int b = DOFD("b_socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t p = src_ip(fam, P(0));
	addr_t d1 = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	addr_t d2 = same_dest ? d1 : dst2(fam, tcp ? PORT_TCP : PORT_UDP);
	DO("a_bind", bind(a, SA(p), p.len));
	DO("a_connect", connect(a, SA(d1), d1.len));
	DO("b_bind", bind(b, SA(p), p.len));
	DO("b_connect", connect(b, SA(d2), d2.len));
	gsn("a_sn", a);
	gsn("b_sn", b);
	gpn("b_pn", b);
	opts3("a_", a);
	opts3("b_", b);
	close_rst(a);
	close_rst(b);
}

/* Both with SO_REUSEADDR set by the program, same fixed port: kernel shares it. */
static void fixed_reuse_both(int tcp, int same_dest)
{
	int a = DOFD("a_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	int b = DOFD("b_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	sopt("a_ra", a, SOL_SOCKET, SO_REUSEADDR, 1);
	sopt("b_ra", b, SOL_SOCKET, SO_REUSEADDR, 1);
	addr_t p = src_ip(F4, P(0));
	addr_t d1 = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	addr_t d2 = same_dest ? d1 : dst2(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("a_bind", bind(a, SA(p), p.len));
	DO("a_connect", connect(a, SA(d1), d1.len));
	DO("b_bind", bind(b, SA(p), p.len));
	DO("b_connect", connect(b, SA(d2), d2.len));
	gsn("b_sn", b);
	gpn("b_pn", b);
	opts3("b_", b);
	close_rst(a);
	close_rst(b);
}

/* Capacity: connect as many as possible over 2 destinations (R = 10). */
enum { CAP_UNBOUND, CAP_BIND0, CAP_NOPORT_BIND0, CAP_FIXED_REUSE };
static void capacity(int tcp, int mode)
{
	int fds[64], n = 0;
	const char *fail = "none";
	int fe = 0;
	for (int i = 0; i < 40; i++) {
		addr_t d = (i & 1) ? a4("127.0.0.2", tcp ? PORT_TCP : PORT_UDP) : a4("127.0.0.1", tcp ? PORT_TCP : PORT_UDP);
		int s = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
		if (s < 0) {
			fail = "socket";
			fe = errno;
			break;
		}
		if (mode == CAP_NOPORT_BIND0)
			setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &(int){1}, sizeof(int));
		if (mode != CAP_UNBOUND) {
			addr_t b = a4("127.0.0.1", 0);
			if (bind(s, SA(b), b.len) != 0) {
				fail = "bind";
				fe = errno;
				close(s);
				break;
			}
		}
		if (connect(s, SA(d), d.len) != 0) {
			fail = "connect";
			fe = errno;
			close(s);
			break;
		}
		fds[n++] = s;
	}
	add(" connected=%d fail=%s:%s", n, fail, fe ? ename(fe) : "-");
	/* every 4-tuple distinct */
	int dup = 0;
	struct sockaddr_in ln[64], pn[64];
	for (int i = 0; i < n; i++) {
		socklen_t l = sizeof ln[i];
		getsockname(fds[i], (struct sockaddr *)&ln[i], &l);
		l = sizeof pn[i];
		getpeername(fds[i], (struct sockaddr *)&pn[i], &l);
		for (int j = 0; j < i; j++)
			if (ln[i].sin_port == ln[j].sin_port && ln[i].sin_addr.s_addr == ln[j].sin_addr.s_addr &&
			    pn[i].sin_port == pn[j].sin_port && pn[i].sin_addr.s_addr == pn[j].sin_addr.s_addr)
				dup++;
	}
	add(" dup4tuples=%d", dup);
	for (int i = 0; i < n; i++)
		close_rst(fds[i]);
}

/* ---------- error paths ---------- */
static void all_calls(int fd)
{
	addr_t d = dst(F4, PORT_TCP);
	addr_t b = src_ip(F4, 0);
	char buf[8];
	DO("bind", bind(fd, SA(b), b.len));
	DO("connect", connect(fd, SA(d), d.len));
	DO("listen", listen(fd, 1));
	DO("accept", accept(fd, NULL, NULL));
	gsn("sn", fd);
	gpn("pn", fd);
	gopt("ra", fd, SOL_SOCKET, SO_REUSEADDR);
	gopt("np", fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
	sopt("set_ra", fd, SOL_SOCKET, SO_REUSEADDR, 1);
	sopt("set_np", fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	DO("sendto", sendto(fd, "x", 1, MSG_DONTWAIT, SA(d), d.len));
	DO("sendto_fo", sendto(fd, "x", 1, MSG_FASTOPEN | MSG_DONTWAIT, SA(d), d.len));
	DO("recv", recv(fd, buf, sizeof buf, MSG_DONTWAIT));
	DO("shutdown", shutdown(fd, SHUT_RDWR));
}

static void badfd(int which)
{
	int fd;
	if (which == 0)
		fd = -1;
	else if (which == 1)
		fd = 1000;
	else {
		fd = DOFD("socket", socket(AF_INET, SOCK_STREAM, 0));
		DO("close", close(fd));
	}
	all_calls(fd);
}

static void notsock(int which)
{
	int fd;
	if (which == 0) {
		int p[2];
		DO("pipe", pipe(p));
		fd = p[0];
	} else {
		fd = DOFD("open", open("/dev/null", O_RDWR));
	}
	all_calls(fd);
	close(fd);
}

static void null_addr(int tcp, int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	socklen_t full = fam == F4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	DO("bind_null", bind(s, NULL, full));
	DO("connect_null", connect(s, NULL, full));
	DO("connect_null0", connect(s, NULL, 0));
	DO("bind_null0", bind(s, NULL, 0));
	DO("sendto_null", sendto(s, "x", 1, MSG_DONTWAIT, NULL, full));
	DO("gsn_nulladdr", getsockname(s, NULL, &full));
	struct sockaddr_storage ss;
	DO("gsn_nulllen", getsockname(s, (struct sockaddr *)&ss, NULL));
	DO("gpn_nulladdr", getpeername(s, NULL, &full));
	gsn("sn", s);
	close(s);
}

static void short_addr(int tcp, int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	addr_t b = src_ip(fam, 0);
	DO("bind_1", bind(s, SA(b), 1));
	DO("bind_short", bind(s, SA(b), b.len - 4));
	DO("connect_short", connect(s, SA(d), d.len - 4));
	DO("connect_2", connect(s, SA(d), 2));
	DO("connect_huge", connect(s, SA(d), 4096));
	DO("sendto_short", sendto(s, "x", 1, MSG_DONTWAIT, SA(d), d.len - 4));
	gsn("sn", s);
	struct sockaddr_storage ss;
	socklen_t l = 4;
	errno = EDOM;
	int r = getsockname(s, (struct sockaddr *)&ss, &l);
	rec("gsn_len4", r, errno);
	add("(l=%u)", (unsigned)l);
	/* bind with a long (but valid) length still works */
	DO("bind_long", bind(s, SA(b), sizeof(struct sockaddr_storage)));
	gsn("sn2", s);
	l = 0;
	r = getsockname(s, (struct sockaddr *)&ss, &l);
	add(" gsn_len0=%d(l=%u)", r, (unsigned)l);
	DO("connect_long", connect(s, SA(d), sizeof(struct sockaddr_storage)));
	gpn("pn", s);
	close_rst(s);
}

static void wrong_family(int tcp, int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t other = fam == F4 ? a6("::1", tcp ? PORT_TCP : PORT_UDP) : a4("127.0.0.1", tcp ? PORT_TCP : PORT_UDP);
	addr_t obind = fam == F4 ? a6("::1", 0) : a4("127.0.0.1", 0);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	strcpy(un.sun_path, "/nonexistent");
	DO("bind_other", bind(s, SA(obind), obind.len));
	DO("bind_unix", bind(s, (struct sockaddr *)&un, sizeof un));
	DO("connect_other", connect(s, SA(other), other.len));
	DO("connect_unix", connect(s, (struct sockaddr *)&un, sizeof un));
	/* AF_UNSPEC bind with INADDR_ANY is accepted by the kernel for AF_INET */
	struct sockaddr_in us = {.sin_family = AF_UNSPEC};
	DO("bind_unspec", bind(s, (struct sockaddr *)&us, sizeof us));
	gsn("sn", s);
	addr_t o2 = fam == F4 ? a6("::1", 0) : a4("127.0.0.1", PORT_UDP);
	DO("sendto_other", sendto(s, "x", 1, MSG_DONTWAIT, SA(o2), o2.len));
	gsn("sn2", s);
	close_rst(s);
}

static void not_on_host(int tcp, int fam, int port)
{
	int s = DOFD("socket", socket(fdomain(fam), tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b = fam == F4 ? a4("192.0.2.1", port) : fam == F6 ? a6("2001:db8::1", port) : a6("::ffff:192.0.2.1", port);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn", s);
	addr_t d = dst(fam, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn2", s);
	close_rst(s);
}

static void v6only_mapped(int tcp)
{
	int s = DOFD("socket", socket(AF_INET6, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	sopt("v6only", s, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	addr_t d = dst(F46, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	addr_t b = src_ip(F46, 0);
	DO("bind_mapped", bind(s, SA(b), b.len));
	gsn("sn", s);
	close_rst(s);
}

static void privileged(int drop)
{
	if (drop) {
		if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
			add(" skipped=cannot-drop-privileges");
			return;
		}
		add(" dropped=1");
	}
	for (int tcp = 1; tcp >= 0; tcp--) {
		neph = 0; /* TCP and UDP ports are separate spaces */
		int s = DOFD(tcp ? "tcp_socket" : "udp_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
		addr_t b = a4("127.0.0.1", drop ? 81 : 80);
		DO("bind_low", bind(s, SA(b), b.len));
		addr_t b0 = a4("127.0.0.1", 0);
		DO("bind0", bind(s, SA(b0), b0.len));
		addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
		DO("connect", connect(s, SA(d), d.len));
		gsn("sn", s);
		close_rst(s);
	}
	int s6 = DOFD("tcp6_socket", socket(AF_INET6, SOCK_STREAM, 0));
	addr_t b6 = a6("::1", drop ? 81 : 80);
	DO("bind6_low", bind(s6, SA(b6), b6.len));
	close(s6);
	DOFD("raw", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
}

/* ---------- other families ---------- */
static void unix_stream(void)
{
	int s = DOFD("socket", socket(AF_UNIX, SOCK_STREAM, 0));
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	memcpy(un.sun_path + 1, UNIX_NAME, strlen(UNIX_NAME));
	socklen_t l = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(UNIX_NAME);
	sopt("set_ra", s, SOL_SOCKET, SO_REUSEADDR, 1);
	DO("connect", connect(s, (struct sockaddr *)&un, l));
	gsn("sn", s);
	gpn("pn", s);
	gopt("ra", s, SOL_SOCKET, SO_REUSEADDR);
	gopt("np", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
	DO("connect2", connect(s, (struct sockaddr *)&un, l));
	struct sockaddr un0 = {.sa_family = AF_UNSPEC};
	DO("unspec", connect(s, &un0, sizeof un0));
	close(s);
	s = DOFD("socket2", socket(AF_UNIX, SOCK_STREAM, 0));
	DO("connect_missing", connect(s, (struct sockaddr *)&un, l - 1));
	close(s);
}

static void unix_dgram(void)
{
	int sv[2];
	DO("socketpair", socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	gsn("sn", sv[0]);
	gpn("pn", sv[0]);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	const char *nm = "cxdiff-dgram";
	memcpy(un.sun_path + 1, nm, strlen(nm));
	socklen_t l = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(nm);
	DO("bind", bind(sv[1], (struct sockaddr *)&un, l));
	gsn("sn1", sv[1]);
	DO("sendto", sendto(sv[0], "x", 1, 0, (struct sockaddr *)&un, l));
	char b;
	DO("recv", recv(sv[1], &b, 1, MSG_DONTWAIT));
	int u = DOFD("socket", socket(AF_UNIX, SOCK_DGRAM, 0));
	DO("connect", connect(u, (struct sockaddr *)&un, l));
	DO("send", send(u, "y", 1, 0));
	gsn("usn", u);
	close(u);
	close(sv[0]);
	close(sv[1]);
}

static void netlink(void)
{
	int s = DOFD("socket", socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	DO("bind", bind(s, (struct sockaddr *)&nl, sizeof nl));
	gsn("sn", s);
	DO("connect", connect(s, (struct sockaddr *)&nl, sizeof nl));
	gpn("pn", s);
	gopt("ra", s, SOL_SOCKET, SO_REUSEADDR);
	sopt("set_ra", s, SOL_SOCKET, SO_REUSEADDR, 1);
	gopt("ra2", s, SOL_SOCKET, SO_REUSEADDR);
	struct sockaddr un = {.sa_family = AF_UNSPEC};
	DO("unspec", connect(s, &un, sizeof un));
	close(s);
	s = DOFD("sockdiag", socket(AF_NETLINK, SOCK_DGRAM, 4 /* NETLINK_SOCK_DIAG */));
	DO("connect", connect(s, (struct sockaddr *)&nl, sizeof nl));
	gsn("sn2", s);
	close(s);
}

static void raw(int fam, int proto)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_RAW, proto));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn", s);
	addr_t d = dst(fam, PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn2", s);
	gpn("pn", s);
	opts3("", s);
	sopt("set_np", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	gopt("np2", s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
	DO("connect2", connect(s, SA(d), d.len));
	close(s);
}

static void packet(void)
{
	int s = DOFD("socket", socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP)));
	gsn("sn", s);
	struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = 1};
	DO("bind", bind(s, (struct sockaddr *)&ll, sizeof ll));
	gsn("sn2", s);
	DO("connect", connect(s, (struct sockaddr *)&ll, sizeof ll));
	gopt("ra", s, SOL_SOCKET, SO_REUSEADDR);
	close(s);
}

static void ping(int fam)
{
	hide_ports = 1; /* ping identifiers come from a global counter */
	int s = DOFD("socket", socket(fdomain(fam), SOCK_DGRAM, fam == F4 ? IPPROTO_ICMP : IPPROTO_ICMPV6));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(fam, 0);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	gpn("pn", s);
	opts3("", s);
	close(s);
	s = DOFD("socket2", socket(fdomain(fam), SOCK_DGRAM, fam == F4 ? IPPROTO_ICMP : IPPROTO_ICMPV6));
	DO("connect2", connect(s, SA(d), d.len));
	gsn("sn2", s);
	close(s);
}

static void otherproto(int proto, int tcpish)
{
	int s = DOFD("socket", socket(AF_INET, tcpish ? SOCK_STREAM : SOCK_DGRAM, proto));
	if (s < 0)
		return;
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn", s);
	opts3("", s);
	if (!tcpish) {
		addr_t d = dst(F4, PORT_UDP);
		DO("connect", connect(s, SA(d), d.len));
		gsn("sn2", s);
	}
	close(s);
}

static void mptcp(void)
{
	int s = DOFD("socket", socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP));
	if (s < 0)
		return;
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(F4, PORT_TCP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	gpn("pn", s);
	close_rst(s);
}

static void misc_tcp(void)
{
	int s = DOFD("socket", socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	flags(s);
	DO("accept_unbound", accept(s, NULL, NULL));
	DO("shutdown_unconnected", shutdown(s, SHUT_RDWR));
	char b;
	DO("recv_unconnected", recv(s, &b, 1, 0));
	DO("send_unconnected", send(s, "x", 1, MSG_NOSIGNAL));
	addr_t d = dst(F4, PORT_TCP);
	DO("sendto_unconnected", sendto(s, "x", 1, MSG_NOSIGNAL, SA(d), d.len));
	gsn("sn", s);
	close(s);
	int u = DOFD("usocket", socket(AF_INET, SOCK_DGRAM, 0));
	DO("listen_udp", listen(u, 1));
	DO("accept_udp", accept(u, NULL, NULL));
	gsn("usn", u);
	close(u);
}

static void listen_then_connect(void)
{
	/* listening socket used for connect: EINVAL/EISCONN from the kernel */
	int s = DOFD("socket", socket(AF_INET, SOCK_STREAM, 0));
	addr_t b = src_ip(F4, 0);
	DO("bind", bind(s, SA(b), b.len));
	DO("listen", listen(s, 1));
	addr_t d = dst(F4, PORT_TCP);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	close(s);
}

static void udp_two_dests_unbound(int fam)
{
	/* unbound UDP connect to two destinations: each socket gets a port; receivers see them.
	 * Whether the two ports are equal is not part of the contract: with connectx they may be
	 * (the port is shared across destinations), so ports are shown as plain "E". */
	anon_eph = 1;
	int a = DOFD("a_socket", socket(fdomain(fam), SOCK_DGRAM, 0));
	int b = DOFD("b_socket", socket(fdomain(fam), SOCK_DGRAM, 0));
	addr_t d1 = dst(fam, PORT_UDP), d2 = dst2(fam, PORT_UDP);
	DO("a_connect", connect(a, SA(d1), d1.len));
	DO("b_connect", connect(b, SA(d2), d2.len));
	gsn("a_sn", a);
	gsn("b_sn", b);
	exchange(a, 0, udp_srv(fam));
	exchange(b, 0, fam == F6 ? us6 : us4b);
	close(a);
	close(b);
}

/* ---------- link-local (fe80::1 on lo, scope id = ifindex of lo) ---------- */
static addr_t ll(int port, int scope)
{
	addr_t a = a6("fe80::1", port);
	((struct sockaddr_in6 *)&a.ss)->sin6_scope_id = scope;
	return a;
}

static void linklocal(int tcp, int bm, int scope)
{
	int s = DOFD("socket", socket(AF_INET6, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	if (bm == BM_IP0 || bm == BM_IPP) {
		addr_t b = ll(bm == BM_IPP ? P(0) : 0, scope);
		DO("bind", bind(s, SA(b), b.len));
	}
	addr_t d = ll(tcp ? PORT_TCP : PORT_UDP, scope);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn", s);
	gpn("pn", s);
	opts3("", s);
	if (scope)
		exchange(s, tcp, tcp ? tll : ull);
	close_rst(s);
}

/* scope ids and flow labels on a non-link-local address, garbage in sin_zero */
static void odd_fields(int tcp)
{
	int s = DOFD("socket", socket(AF_INET6, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b = a6("::1", 0);
	((struct sockaddr_in6 *)&b.ss)->sin6_scope_id = 1;
	DO("bind_scope", bind(s, SA(b), b.len));
	addr_t d = a6("::1", tcp ? PORT_TCP : PORT_UDP);
	((struct sockaddr_in6 *)&d.ss)->sin6_scope_id = 1;
	DO("connect_scope", connect(s, SA(d), d.len));
	gsn("sn", s);
	gpn("pn", s);
	close_rst(s);
	neph = 0; /* a new socket after the first was closed: its port may be the same or not */
	int t = DOFD("socket4", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b4 = a4("127.0.0.1", 0);
	memset(((struct sockaddr_in *)&b4.ss)->sin_zero, 0x5a, 8);
	DO("bind_zero", bind(t, SA(b4), b4.len));
	addr_t d4 = a4("127.0.0.1", tcp ? PORT_TCP : PORT_UDP);
	memset(((struct sockaddr_in *)&d4.ss)->sin_zero, 0x5a, 8);
	DO("connect_zero", connect(t, SA(d4), d4.len));
	gsn("sn4", t);
	close_rst(t);
}

/* UDP: sendto first (autobind), then connect: the port must stay */
static void udp_sendto_then_connect(int bm)
{
	int s = DOFD("socket", socket(AF_INET, SOCK_DGRAM, 0));
	if (bm == BM_IP0) {
		addr_t b = a4("127.0.0.1", 0);
		DO("bind", bind(s, SA(b), b.len));
	}
	addr_t d = dst(F4, PORT_UDP), d2 = dst2(F4, PORT_UDP);
	DO("sendto", sendto(s, "a", 1, 0, SA(d2), d2.len));
	gsn("sn", s);
	DO("connect", connect(s, SA(d), d.len));
	gsn("sn2", s);
	exchange(s, 0, us4a);
	close(s);
}

/* the program changes SO_REUSEADDR after connect; a later bind to the port sees the program's value */
static void reuseaddr_after_connect(int tcp)
{
	int s = DOFD("socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	addr_t b = a4("127.0.0.1", P(0));
	DO("bind", bind(s, SA(b), b.len));
	addr_t d = dst(F4, tcp ? PORT_TCP : PORT_UDP);
	DO("connect", connect(s, SA(d), d.len));
	gopt("ra", s, SOL_SOCKET, SO_REUSEADDR);
	sopt("set_ra1", s, SOL_SOCKET, SO_REUSEADDR, 1);
	gopt("ra1", s, SOL_SOCKET, SO_REUSEADDR);
	sopt("set_ra0", s, SOL_SOCKET, SO_REUSEADDR, 0);
	gopt("ra0", s, SOL_SOCKET, SO_REUSEADDR);
	gopt("rp", s, SOL_SOCKET, SO_REUSEPORT);
	close_rst(s);
}

/* both sockets set SO_REUSEPORT and bind the same fixed port */
static void reuseport_fixed(int tcp)
{
	int a = DOFD("a_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	int b = DOFD("b_socket", socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0));
	sopt("a_rp", a, SOL_SOCKET, SO_REUSEPORT, 1);
	sopt("b_rp", b, SOL_SOCKET, SO_REUSEPORT, 1);
	addr_t p = src_ip(F4, P(0));
	DO("a_bind", bind(a, SA(p), p.len));
	DO("b_bind", bind(b, SA(p), p.len));
	if (tcp) {
		DO("a_listen", listen(a, 4));
		DO("b_listen", listen(b, 4));
	}
	gsn("b_sn", b);
	opts3("b_", b);
	close(a);
	close(b);
}

/* TCP bind(ip,0) then listen/getsockname variants used by servers that pick a random port */
static void bind0_getsockname_listen(int fam)
{
	int s = DOFD("socket", socket(fdomain(fam), SOCK_STREAM, 0));
	addr_t b = src_ip(fam, 0);
	DO("bind", bind(s, SA(b), b.len));
	gsn("sn_bound", s);
	DO("listen", listen(s, 4));
	gsn("sn", s);
	int c = DOFD("csocket", socket(fdomain(fam), SOCK_STREAM, 0));
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	getsockname(s, (struct sockaddr *)&ss, &len);
	DO("cconnect", connect(c, (struct sockaddr *)&ss, len));
	close_rst(c);
	close(s);
}

static void add_linklocal(void)
{
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (s < 0)
		cx_die("netlink");
	struct {
		struct nlmsghdr nh;
		struct ifaddrmsg ifa;
		char attrs[64];
	} req;
	memset(&req, 0, sizeof req);
	req.nh.nlmsg_type = RTM_NEWADDR;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
	req.ifa.ifa_family = AF_INET6;
	req.ifa.ifa_prefixlen = 64;
	req.ifa.ifa_flags = IFA_F_NODAD;
	req.ifa.ifa_scope = RT_SCOPE_LINK;
	req.ifa.ifa_index = if_nametoindex("lo");
	struct rtattr *rta = (struct rtattr *)req.attrs;
	rta->rta_type = IFA_LOCAL;
	rta->rta_len = RTA_LENGTH(16);
	inet_pton(AF_INET6, "fe80::1", RTA_DATA(rta));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.ifa) + RTA_ALIGN(rta->rta_len);
	struct sockaddr_nl k = {.nl_family = AF_NETLINK};
	if (sendto(s, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&k, sizeof k) < 0)
		cx_die("RTM_NEWADDR send");
	char buf[512];
	ssize_t n = recv(s, buf, sizeof buf, 0);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (n < 0 || h->nlmsg_type != NLMSG_ERROR || ((struct nlmsgerr *)NLMSG_DATA(h))->error != 0) {
		errno = n < 0 ? errno : -((struct nlmsgerr *)NLMSG_DATA(h))->error;
		cx_die("RTM_NEWADDR fe80::1 on lo");
	}
	close(s);
}

/* ---------- main ---------- */
static int mk_listener(int fam, const char *ip, int port, int tcp, int fo)
{
	addr_t a = fam == F4 ? a4(ip, port) : a6(ip, port);
	int s = socket(fdomain(fam), (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
	if (s < 0)
		cx_die("listener socket");
	if (fam == F6 && setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int)) != 0)
		cx_die("v6only");
	if (fo && setsockopt(s, IPPROTO_TCP, TCP_FASTOPEN, &(int){16}, sizeof(int)) != 0)
		cx_die("TCP_FASTOPEN");
	if (bind(s, SA(a), a.len) != 0)
		cx_die("listener bind %s:%d", ip, port);
	if (tcp && listen(s, 512) != 0)
		cx_die("listen");
	return s;
}

int main(int argc, char **argv)
{
	enter_netns(argv, "40000", "40009");
	if (argc > 1)
		only = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	tl4a = mk_listener(F4, "127.0.0.1", PORT_TCP, 1, 0);
	tl4b = mk_listener(F4, "127.0.0.2", PORT_TCP, 1, 0);
	tl6 = mk_listener(F6, "::1", PORT_TCP, 1, 0);
	tfo4 = mk_listener(F4, "127.0.0.1", PORT_TFO, 1, 1);
	tfo6 = mk_listener(F6, "::1", PORT_TFO, 1, 1);
	us4a = mk_listener(F4, "127.0.0.1", PORT_UDP, 0, 0);
	us4b = mk_listener(F4, "127.0.0.2", PORT_UDP, 0, 0);
	us6 = mk_listener(F6, "::1", PORT_UDP, 0, 0);
	add_linklocal();
	{
		int lo = if_nametoindex("lo");
		addr_t a = ll(PORT_TCP, lo);
		tll = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (tll < 0 || bind(tll, SA(a), a.len) != 0 || listen(tll, 512) != 0)
			cx_die("link-local listener");
		a = ll(PORT_UDP, lo);
		ull = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (ull < 0 || bind(ull, SA(a), a.len) != 0)
			cx_die("link-local udp");
	}
	ul = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	memcpy(un.sun_path + 1, UNIX_NAME, strlen(UNIX_NAME));
	if (bind(ul, (struct sockaddr *)&un, offsetof(struct sockaddr_un, sun_path) + 1 + strlen(UNIX_NAME)) != 0 ||
	    listen(ul, 16) != 0)
		cx_die("unix listener");

	char name[128];
	/* the cross product: TCP/UDP x v4/v6/dual x block/nonblock/FIONBIO x bind mode */
	for (int tcp = 1; tcp >= 0; tcp--)
		for (int fam = F4; fam <= F46; fam++)
			for (int nb = 0; nb < 3; nb++)
				for (int bm = 0; bm < 4; bm++) {
					snprintf(name, sizeof name, "%s%s_%s_%s_connect", tcp ? "tcp" : "udp",
						 famname[fam], nbname[nb], bmname[bm]);
					RUN(name, generic(tcp, fam, nb, bm));
				}
	for (int tcp = 1; tcp >= 0; tcp--)
		for (int fam = F4; fam <= F46; fam++) {
			snprintf(name, sizeof name, "%s%s_bindip0_getsockname_connect", tcp ? "tcp" : "udp", famname[fam]);
			RUN(name, gsn_after_bind0(tcp, fam));
			snprintf(name, sizeof name, "%s%s_bindwild0_getsockname_connect", tcp ? "tcp" : "udp", famname[fam]);
			RUN(name, gsn_after_wild0(tcp, fam));
			snprintf(name, sizeof name, "%s%s_bind0_bind_again", tcp ? "tcp" : "udp", famname[fam]);
			RUN(name, bind_again(tcp, fam));
			snprintf(name, sizeof name, "%s%s_connect_twice_other_dest", tcp ? "tcp" : "udp", famname[fam]);
			RUN(name, connect_twice(tcp, fam));
		}
	for (int fam = F4; fam <= F46; fam++)
		for (int bm = 0; bm < 4; bm++) {
			snprintf(name, sizeof name, "tcp%s_%s_listen", famname[fam], bmname[bm]);
			RUN(name, listen_scn(fam, bm));
		}
	for (int fam = F4; fam <= F6; fam++) {
		snprintf(name, sizeof name, "tcp%s_bindip0_refused_then_connect", famname[fam]);
		RUN(name, bind0_refused(fam));
		for (int tcp = 1; tcp >= 0; tcp--)
			for (int nb = 0; nb < 2; nb++) {
				snprintf(name, sizeof name, "%s%s_%s_refused", tcp ? "tcp" : "udp", famname[fam], nbname[nb]);
				RUN(name, refused(tcp, fam, nb));
			}
	}
	RUN("tcp4_fastopen_block_unbound", tfo(F4, 0, BM_NONE, 1));
	RUN("tcp4_fastopen_nonblock_unbound", tfo(F4, 1, BM_NONE, 1));
	RUN("tcp4_fastopen_block_bindip0", tfo(F4, 0, BM_IP0, 0));
	RUN("tcp4_fastopen_nonblock_bindip0", tfo(F4, 1, BM_IP0, 0));
	RUN("tcp4_fastopen_block_bindipP", tfo(F4, 0, BM_IPP, 0));
	RUN("tcp6_fastopen_block_unbound", tfo(F6, 0, BM_NONE, 1));
	RUN("tcp6_fastopen_nonblock_bindip0", tfo(F6, 1, BM_IP0, 0));
	RUN("tcp46_fastopen_block_bindip0", tfo(F46, 0, BM_IP0, 0));
	RUN("tcp4_fastopen_misuse", tfo_misc());
	for (int fam = F4; fam <= F46; fam++)
		for (int bm = 0; bm < 4; bm++)
			for (int how = 0; how < 3; how++) {
				if (how && bm != BM_IP0)
					continue;
				snprintf(name, sizeof name, "udp%s_%s_%s", famname[fam], bmname[bm],
					 how == 0 ? "sendto" : how == 1 ? "sendmsg" : "sendmmsg");
				RUN(name, udp_sendto(fam, bm, how));
			}
	RUN("udp4_bindip0_send_without_dest", udp_bind0_nodest(F4));
	RUN("udp6_bindip0_send_without_dest", udp_bind0_nodest(F6));
	RUN("udp4_bindip0_recv_first", udp_bind0_recv_first());
	for (int tcp = 1; tcp >= 0; tcp--)
		for (int fam = F4; fam <= F46; fam++)
			for (int bm = 0; bm < 4; bm++) {
				if (fam != F4 && (bm == BM_WILD0 || bm == BM_IPP))
					continue;
				snprintf(name, sizeof name, "%s%s_%s_unspec_disconnect", tcp ? "tcp" : "udp", famname[fam],
					 bmname[bm]);
				RUN(name, disconnect(tcp, fam, bm));
			}
	RUN("tcp4_bindip0_refused_then_rebind", tcp_refused_then_rebind(F4));
	RUN("tcp6_bindip0_refused_then_rebind", tcp_refused_then_rebind(F6));
	RUN("tcp6_bindip0_fastopen_refused_at_once", tfo_refused_keeps_port());
	RUN("tcp4_fastopen_on_listener", tfo_on_listener());
	RUN("udp4_disconnect_keeps_queue", udp_disconnect_keeps_queue(F4));
	RUN("udp6_disconnect_keeps_queue", udp_disconnect_keeps_queue(F6));
	RUN("tcp4_bindipP_connect_refused_at_once", tcp_fixed_connect_refused_at_once());
	RUN("udp4_kept_then_bind_unspec_any", udp_kept(F4, 0));
	RUN("udp4_kept_then_connect_len200", udp_kept(F4, 1));
	RUN("udp4_kept_then_connect_efault", udp_kept(F4, 2));
	RUN("udp4_kept_then_send_without_dest", udp_kept(F4, 3));
	RUN("udp6_kept_then_v6only", udp_kept(F6, 4));
	RUN("tcp4_unspec_unconnected", unspec_unconnected(1));
	RUN("udp4_unspec_unconnected", unspec_unconnected(0));
	RUN("tcp4_prog_noport_curl", prog_noport(F4, 0));
	RUN("tcp6_prog_noport_curl", prog_noport(F6, 0));
	RUN("tcp4_prog_noport_after_bind", prog_noport(F4, 1));
	RUN("udp4_prog_noport", prog_noport_udp());
	RUN("tcp4_prog_reuseaddr_bindipP", prog_reuseaddr_fixed(1));
	RUN("udp4_prog_reuseaddr_bindipP", prog_reuseaddr_fixed(0));
	RUN("tcp4_prog_reuseport_bindip0", prog_reuseport_bind0(1));
	RUN("udp4_prog_reuseport_bindip0", prog_reuseport_bind0(0));
	RUN("udp4_dig_pattern", dig_pattern(F4));
	RUN("udp6_dig_pattern", dig_pattern(F6));
	RUN("tcp4_getsockopt_edges_unbound", getsockopt_edges(1, BM_NONE, 0));
	RUN("tcp4_getsockopt_edges_bindip0", getsockopt_edges(1, BM_IP0, 0));
	RUN("tcp4_getsockopt_edges_bindipP", getsockopt_edges(1, BM_IPP, 0));
	RUN("udp4_getsockopt_edges_unbound", getsockopt_edges(0, BM_NONE, 0));
	RUN("udp4_getsockopt_edges_bindip0", getsockopt_edges(0, BM_IP0, 0));
	RUN("udp4_getsockopt_edges_bindipP", getsockopt_edges(0, BM_IPP, 0));
	RUN("tcp4_getsockopt_edges_set_bindip0", getsockopt_edges(1, BM_IP0, 1));
	RUN("tcp4_getsockopt_edges_set_bindipP", getsockopt_edges(1, BM_IPP, 1));
	RUN("udp4_getsockopt_edges_set_unbound", getsockopt_edges(0, BM_NONE, 1));
	RUN("udp4_getsockopt_edges_set_bindip0", getsockopt_edges(0, BM_IP0, 1));
	RUN("tcp4_setsockopt_edges", setsockopt_edges(1));
	RUN("udp4_setsockopt_edges", setsockopt_edges(0));
	RUN("tcp4_local_port_range_unbound", local_port_range(1, BM_NONE));
	RUN("tcp4_local_port_range_bindip0", local_port_range(1, BM_IP0));
	RUN("udp4_local_port_range_unbound", local_port_range(0, BM_NONE));
	RUN("udp4_local_port_range_bindip0", local_port_range(0, BM_IP0));
	RUN("tcp4_server_exclusive", server_exclusive(1, 0));
	RUN("tcp4_server_exclusive_reuseaddr", server_exclusive(1, 1));
	RUN("udp4_server_exclusive", server_exclusive(0, 0));
	RUN("udp4_server_exclusive_reuseaddr", server_exclusive(0, 1));
	RUN("tcp4_server_then_client_same_port", server_then_client(1));
	RUN("udp4_server_then_client_same_port", server_then_client(0));
	RUN("tcp4_client_then_server_same_port", client_then_server(1));
	RUN("udp4_client_then_server_same_port", client_then_server(0));
	RUN("tcp4_bindipP_two_dests", fixed_two_dests(1, F4, 0));
	RUN("tcp46_bindipP_two_dests", fixed_two_dests(1, F46, 0));
	RUN("udp4_bindipP_two_dests", fixed_two_dests(0, F4, 0));
	RUN("udp46_bindipP_two_dests", fixed_two_dests(0, F46, 0));
	RUN("tcp4_bindipP_same_dest_twice", fixed_two_dests(1, F4, 1));
	RUN("udp4_bindipP_same_dest_twice", fixed_two_dests(0, F4, 1));
	RUN("tcp4_prog_reuseaddr_bindipP_two_dests", fixed_reuse_both(1, 0));
	RUN("tcp4_prog_reuseaddr_bindipP_same_dest", fixed_reuse_both(1, 1));
	RUN("udp4_prog_reuseaddr_bindipP_two_dests", fixed_reuse_both(0, 0));
	RUN("udp4_unbound_two_dests", udp_two_dests_unbound(F4));
	RUN("udp6_unbound_two_dests", udp_two_dests_unbound(F6));
	RUN("capacity_tcp_unbound_2dests", capacity(1, CAP_UNBOUND));
	RUN("capacity_tcp_bindip0_2dests", capacity(1, CAP_BIND0));
	RUN("capacity_tcp_prog_noport_bindip0_2dests", capacity(1, CAP_NOPORT_BIND0));
	RUN("capacity_udp_unbound_2dests", capacity(0, CAP_UNBOUND));
	RUN("capacity_udp_bindip0_2dests", capacity(0, CAP_BIND0));
	RUN("err_badfd_minus1", badfd(0));
	RUN("err_badfd_1000", badfd(1));
	RUN("err_badfd_closed", badfd(2));
	RUN("err_notsock_pipe", notsock(0));
	RUN("err_notsock_devnull", notsock(1));
	for (int tcp = 1; tcp >= 0; tcp--)
		for (int fam = F4; fam <= F6; fam++) {
			snprintf(name, sizeof name, "err_%s%s_null_addr", tcp ? "tcp" : "udp", famname[fam]);
			RUN(name, null_addr(tcp, fam));
			snprintf(name, sizeof name, "err_%s%s_short_addr", tcp ? "tcp" : "udp", famname[fam]);
			RUN(name, short_addr(tcp, fam));
			snprintf(name, sizeof name, "err_%s%s_wrong_family", tcp ? "tcp" : "udp", famname[fam]);
			RUN(name, wrong_family(tcp, fam));
		}
	for (int tcp = 1; tcp >= 0; tcp--)
		for (int fam = F4; fam <= F46; fam++)
			for (int fixed = 0; fixed < 2; fixed++) {
				snprintf(name, sizeof name, "err_%s%s_bind_not_on_host_%s", tcp ? "tcp" : "udp", famname[fam],
					 fixed ? "P" : "0");
				RUN(name, not_on_host(tcp, fam, fixed ? P(0) : 0));
			}
	RUN("err_tcp6_v6only_to_mapped", v6only_mapped(1));
	RUN("err_udp6_v6only_to_mapped", v6only_mapped(0));
	RUN("privileged_port_root", privileged(0));
	RUN("privileged_port_unprivileged", privileged(1));
	RUN("other_unix_stream", unix_stream());
	RUN("other_unix_dgram", unix_dgram());
	RUN("other_netlink", netlink());
	RUN("other_raw4_icmp", raw(F4, IPPROTO_ICMP));
	RUN("other_raw4_udp", raw(F4, IPPROTO_UDP));
	RUN("other_raw4_tcp", raw(F4, IPPROTO_TCP));
	RUN("other_raw6_icmpv6", raw(F6, IPPROTO_ICMPV6));
	RUN("other_raw6_udp", raw(F6, IPPROTO_UDP));
	RUN("other_packet", packet());
	RUN("other_ping4", ping(F4));
	RUN("other_ping6", ping(F6));
	RUN("other_udplite4", otherproto(IPPROTO_UDPLITE, 0));
	RUN("other_sctp4", otherproto(IPPROTO_SCTP, 1));
	RUN("other_mptcp4", mptcp());
	{
		int lo = if_nametoindex("lo");
		for (int tcp = 1; tcp >= 0; tcp--) {
			for (int bm = 0; bm < 4; bm++) {
				if (bm == BM_WILD0)
					continue;
				snprintf(name, sizeof name, "%s6_linklocal_%s_connect", tcp ? "tcp" : "udp", bmname[bm]);
				RUN(name, linklocal(tcp, bm, lo));
			}
			snprintf(name, sizeof name, "%s6_linklocal_no_scope", tcp ? "tcp" : "udp");
			RUN(name, linklocal(tcp, BM_IP0, 0));
			snprintf(name, sizeof name, "%s_odd_address_fields", tcp ? "tcp" : "udp");
			RUN(name, odd_fields(tcp));
			snprintf(name, sizeof name, "%s4_prog_reuseaddr_after_connect", tcp ? "tcp" : "udp");
			RUN(name, reuseaddr_after_connect(tcp));
			snprintf(name, sizeof name, "%s4_prog_reuseport_fixed_port_twice", tcp ? "tcp" : "udp");
			RUN(name, reuseport_fixed(tcp));
		}
	}
	RUN("udp4_unbound_sendto_then_connect", udp_sendto_then_connect(BM_NONE));
	RUN("udp4_bindip0_sendto_then_connect", udp_sendto_then_connect(BM_IP0));
	RUN("tcp4_bindip0_getsockname_listen", bind0_getsockname_listen(F4));
	RUN("tcp6_bindip0_getsockname_listen", bind0_getsockname_listen(F6));
	RUN("tcp4_misc_unconnected", misc_tcp());
	RUN("tcp4_listen_then_connect", listen_then_connect());
	fprintf(stderr, "scenarios: %d\n", nscen);
	return 0;
}
