/* fuzz: a seeded random sequence of calls to every function libconnectx exports, with random
 * (often bad) arguments. Prints one normalised line per call; the harness runs it without and
 * with LD_PRELOAD in fresh namespaces and compares the lines.
 *   fuzz SEED CALLS [guard]
 * Determinism: fds the sequence creates are moved to fixed numbers (500..563 slots, specials
 * 600..611, harness 650..653) so the library's own low fds never shift them; ports the kernel or
 * connectx choose (ip_local_port_range 40000-40999) print as E; nothing blocks (MSG_DONTWAIT on
 * every send/receive, accept only when it cannot block, listen backlogs >= 1024).
 * Model rules that keep out README's intended differences: a fixed port is never bound or
 * listened on again once a socket on it has connected or sent (sharing ports held by
 * connections), and a UDP socket whose fixed port has several holders never connects (refused
 * duplicates).
 * "guard" mode: address and option buffers may end right before an unmapped page, with lengths
 * that run past it (the kernel answers EFAULT). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE 2
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC 4
#endif
int close_range(unsigned int, unsigned int, int);
int fcntl64(int, int, ...);

static uint64_t rs;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static int R(int n) { return (int)(rnd() % (uint64_t)n); }
static int P(int pct) { return R(100) < pct; }

#define SLOT0 500
#define NSLOT 64
#define SPEC0 600
#define HARN0 650
static int guard;
static char *gpage; /* a page followed by an unmapped page */

/* ---------- model ---------- */
#define NPORTS 64
static int fixed_port[NSLOT];    /* fixed port bound by the slot's socket (0 = none) */
/* index NPORTS and NPORTS+1: the harness ports 7000 and 7001, which binds may also ask for */
static int port_holders[NPORTS + 2]; /* pool ports 20000+i: sockets bound (successful binds) */
static int port_tainted[NPORTS + 2]; /* a holder connected or sent: never bind it again */
static int pool_port(int i) { return 20000 + i; }
static int pool_index(int port) {
    if (port == 7000 || port == 7001) return NPORTS + port - 7000;
    return port >= 20000 && port < 20000 + NPORTS ? port - 20000 : -1;
}
static int slot_of(int fd) { return fd >= SLOT0 && fd < SLOT0 + NSLOT ? fd - SLOT0 : -1; }

static void slot_forget(int fd) {
    int s = slot_of(fd);
    if (s < 0) return;
    fixed_port[s] = 0;
}
/* does any other open slot share the fixed port of slot s? (kept simple: holders count) */
static int port_shared(int s) {
    int i = pool_index(fixed_port[s]);
    return i >= 0 && port_holders[i] > 1;
}
static void taint(int fd) {
    if (fd == HARN0 + 2 || fd == HARN0 + 3) port_tainted[NPORTS + 1] = 1; /* a UDP sink on 7001 */
    int s = slot_of(fd);
    if (s < 0) return;
    int i = pool_index(fixed_port[s]);
    if (i >= 0) port_tainted[i] = 1;
}

/* ---------- output ---------- */
static char line[4096];
static int lp;
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lp += vsnprintf(line + lp, sizeof line - lp, fmt, ap);
    va_end(ap);
    if (lp > (int)sizeof line - 200) lp = sizeof line - 200;
}
static void res(long r, int e) {
    if (r < 0) out(" -> %ld %s", r, strerrorname_np(e) ? strerrorname_np(e) : "E?");
    else out(" -> %ld", r);
}
/* `len`: the length the kernel returned; `cap`: the buffer length the program gave it (the
 * kernel copied min(len, cap) bytes). Bytes it did not copy are shown as zero, and a port cut
 * short by `cap` is still normalised by its high byte (ports 40000-40999 are 0x9c40-0xa027). */
static void norm_addr(const struct sockaddr *got, socklen_t len, socklen_t cap) {
    if (len < 2 || cap < 2) { out(" addr(len %u)", len); return; }
    struct sockaddr_storage copy;
    memset(&copy, 0, sizeof copy);
    if (len > sizeof copy) len = sizeof copy;
    memcpy(&copy, got, len < cap ? len : cap);
    const struct sockaddr *a = (const void *)&copy;
    char ip[64] = "?";
    int port = -1;
    if (a->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *v = (const void *)a;
        inet_ntop(AF_INET, &v->sin_addr, ip, sizeof ip);
        port = ntohs(v->sin_port);
    } else if (a->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *v = (const void *)a;
        inet_ntop(AF_INET6, &v->sin6_addr, ip, sizeof ip);
        port = ntohs(v->sin6_port);
    } else {
        out(" addr(fam %d len %u)", a->sa_family, len);
        return;
    }
    int cut = cap < 4 && (port >> 8) >= 0x9c && (port >> 8) <= 0xa0;
    if ((port >= 40000 && port <= 40999) || cut) out(" %s:E", ip);
    else out(" %s:%d", ip, port);
}

/* ---------- fds ---------- */
static int pick_fd(void) {
    int r = R(100);
    if (r < 70) return SLOT0 + R(NSLOT);
    if (r < 82) return SPEC0 + R(12);
    if (r < 88) return 700 + R(10); /* never opened */
    if (r < 92) return HARN0 + R(4);
    if (r < 96) return -1 - R(3);
    if (r < 98) return (1 << 20) + 5;
    return 0x7fffffff;
}
static int pick_target(void) { return P(92) ? SLOT0 + R(NSLOT) : (P(50) ? -1 : (1 << 20) + 3); }

/* Moves a freshly returned fd to `to` (a slot), so numbers are the same with and without the
 * library. The move itself goes through the hooked dup2/close (like any program's). */
static void relocate(int fd, int to) {
    if (fd < 0) return;
    /* A blocking TCP connect whose SYN is never answered (a non-local source the fuzz bound with
     * IP_FREEBIND, a broadcast source, ...) would wait for minutes: bound every wait to 200 ms,
     * in both runs alike. Set with the raw system call: the library does not see it. */
    struct timeval tv = {0, 200000};
    syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1; /* see do_setsockopt: no segment waits for a delayed ACK */
    syscall(SYS_setsockopt, fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd == to) return;
    slot_forget(to);
    if (dup2(fd, to) < 0) { printf("harness_error relocate %d->%d %s\n", fd, to, strerror(errno)); exit(3); }
    close(fd);
}

/* ---------- addresses ---------- */
static struct sockaddr_storage abuf;
static const struct sockaddr *aptr;
static socklen_t alen;
static int a_port;

static int dgram_dest;
static void gen_addr(int for_bind, int v6hint) {
    memset(&abuf, 0, sizeof abuf);
    int fam_r = R(100);
    int fam = fam_r < 45 ? (v6hint ? AF_INET6 : AF_INET) : fam_r < 80 ? (v6hint ? AF_INET : AF_INET6)
            : fam_r < 86 ? AF_UNSPEC : fam_r < 92 ? AF_UNIX : R(50);
    int port;
    int pr = R(100);
    if (for_bind) {
        if (pr < 45) port = 0;
        else if (pr < 80) {
            int i = R(NPORTS), tries = 0;
            while (port_tainted[i] && tries++ < NPORTS) i = (i + 1) % NPORTS;
            port = port_tainted[i] ? 0 : pool_port(i);
        } else if (pr < 88) {
            port = 7000 + R(2);
            if (port_tainted[pool_index(port)]) port = 0;
        } else if (pr < 95) port = 1 + R(1023);
        else port = 9;
    } else {
        if (pr < 40) port = 7000;
        else if (pr < 55) port = 7001;
        else if (pr < 70) port = pool_port(R(NPORTS));
        else if (pr < 85) port = 9;
        else if (pr < 92) port = 0;
        else port = 1 + R(1023);
    }
    a_port = port;
    alen = sizeof abuf;
    if (fam == AF_INET) {
        struct sockaddr_in *v = (void *)&abuf;
        static const char *ips[] = {"127.0.0.1", "127.0.0.1", "127.0.0.2", "0.0.0.0", "10.1.2.3", "127.255.255.255", "224.0.0.1"};
        v->sin_family = AF_INET;
        v->sin_port = htons(port);
        inet_pton(AF_INET, ips[R(7)], &v->sin_addr);
        alen = sizeof *v;
    } else if (fam == AF_INET6) {
        struct sockaddr_in6 *v = (void *)&abuf;
        static const char *ips[] = {"::1", "::1", "::", "::ffff:127.0.0.1", "::ffff:127.0.0.2", "fe80::1", "2001:db8::1", "ff02::1"};
        int k = R(8);
        if (k == 5 && !for_bind && !dgram_dest) k = 0; /* a TCP SYN to fe80::1%lo waits 2 minutes */
        v->sin6_family = AF_INET6;
        v->sin6_port = htons(port);
        inet_pton(AF_INET6, ips[k], &v->sin6_addr);
        if (k == 5 && P(50)) v->sin6_scope_id = 1;
        alen = sizeof *v;
    } else if (fam == AF_UNIX) {
        struct sockaddr_un *u = (void *)&abuf;
        u->sun_family = AF_UNIX;
        snprintf(u->sun_path + 1, sizeof u->sun_path - 1, "fz%d", R(4)); /* abstract */
        alen = offsetof(struct sockaddr_un, sun_path) + 5;
    } else {
        abuf.ss_family = fam;
        for (int i = 2; i < 16; i++) ((unsigned char *)&abuf)[i] = R(256);
        alen = 16;
    }
    int lr = R(100);
    if (lr < 6) alen = R(16);
    else if (lr < 9) alen = sizeof abuf + R(2) * 1000;
    else if (lr < 12) alen = sizeof(struct sockaddr_in6);
    aptr = (const struct sockaddr *)&abuf;
    if (P(4)) aptr = NULL;
    else if (guard && P(30)) {
        /* the buffer ends before the unmapped page; alen may run past it */
        int avail = 2 + R(28);
        char *p = gpage + 4096 - avail;
        memcpy(p, &abuf, avail);
        aptr = (const struct sockaddr *)p;
    }
    char ipb[64] = "-";
    if (fam == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&abuf)->sin_addr, ipb, sizeof ipb);
    if (fam == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&abuf)->sin6_addr, ipb, sizeof ipb);
    out(" addr[fam %d %s port %d len %u%s]", fam, ipb, port, alen, aptr ? "" : " NULL");
}

/* ---------- options ---------- */
struct opt { int level, name, kind; const char *nm; };
enum { K_INT, K_LINGER, K_RANGE, K_STR, K_BYTES, K_TV };
static const struct opt opts[] = {
    {SOL_SOCKET, SO_REUSEADDR, K_INT, "REUSEADDR"}, {SOL_SOCKET, SO_REUSEPORT, K_INT, "REUSEPORT"},
    {SOL_SOCKET, SO_KEEPALIVE, K_INT, "KEEPALIVE"}, {SOL_SOCKET, SO_BROADCAST, K_INT, "BROADCAST"},
    {SOL_SOCKET, SO_SNDBUF, K_INT, "SNDBUF"}, {SOL_SOCKET, SO_RCVBUF, K_INT, "RCVBUF"},
    {SOL_SOCKET, SO_LINGER, K_LINGER, "LINGER"}, {SOL_SOCKET, SO_PRIORITY, K_INT, "PRIORITY"},
    {SOL_SOCKET, SO_MARK, K_INT, "MARK"}, {SOL_SOCKET, SO_BINDTODEVICE, K_STR, "BINDTODEVICE"},
    {SOL_SOCKET, SO_TYPE, K_INT, "TYPE"}, {SOL_SOCKET, SO_PROTOCOL, K_INT, "PROTOCOL"},
    {SOL_SOCKET, SO_DOMAIN, K_INT, "DOMAIN"}, {SOL_SOCKET, SO_ACCEPTCONN, K_INT, "ACCEPTCONN"},
    {SOL_SOCKET, SO_ERROR, K_INT, "ERROR"}, {SOL_SOCKET, SO_OOBINLINE, K_INT, "OOBINLINE"},
    {SOL_SOCKET, SO_RCVTIMEO, K_TV, "RCVTIMEO"}, {SOL_SOCKET, SO_COOKIE, K_BYTES, "COOKIE"},
    {SOL_SOCKET, SO_PASSCRED, K_INT, "PASSCRED"},
    {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, K_INT, "NO_PORT"}, {IPPROTO_IP, IP_LOCAL_PORT_RANGE, K_RANGE, "PORT_RANGE"},
    {IPPROTO_IP, IP_TTL, K_INT, "TTL"}, {IPPROTO_IP, IP_TOS, K_INT, "TOS"}, {IPPROTO_IP, IP_RECVERR, K_INT, "RECVERR"},
    {IPPROTO_IP, IP_FREEBIND, K_INT, "FREEBIND"}, {IPPROTO_IP, IP_TRANSPARENT, K_INT, "TRANSPARENT"},
    {IPPROTO_IP, IP_MTU_DISCOVER, K_INT, "MTU_DISCOVER"}, {IPPROTO_IP, IP_PKTINFO, K_INT, "PKTINFO"},
    {IPPROTO_IPV6, IPV6_V6ONLY, K_INT, "V6ONLY"}, {IPPROTO_IPV6, IPV6_UNICAST_HOPS, K_INT, "HOPS"},
    {IPPROTO_IPV6, IPV6_RECVERR, K_INT, "V6RECVERR"},
    {IPPROTO_TCP, TCP_NODELAY, K_INT, "NODELAY"}, {IPPROTO_TCP, TCP_KEEPIDLE, K_INT, "KEEPIDLE"},
    {IPPROTO_TCP, TCP_FASTOPEN, K_INT, "FASTOPEN"}, {IPPROTO_TCP, TCP_FASTOPEN_CONNECT, K_INT, "FASTOPEN_CONNECT"},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, K_INT, "DEFER_ACCEPT"}, {IPPROTO_TCP, TCP_USER_TIMEOUT, K_INT, "USER_TIMEOUT"},
    {IPPROTO_TCP, TCP_CORK, K_INT, "CORK"}, {IPPROTO_TCP, TCP_MAXSEG, K_INT, "MAXSEG"},
    {IPPROTO_TCP, TCP_CONGESTION, K_STR, "CONGESTION"}, {IPPROTO_TCP, TCP_INFO, K_BYTES, "TCP_INFO"},
    {IPPROTO_UDP, UDP_CORK, K_INT, "UDP_CORK"}, {IPPROTO_UDP, UDP_SEGMENT, K_INT, "UDP_SEGMENT"},
};
#define NOPTS (int)(sizeof opts / sizeof opts[0])
/* getsockopt values printed (others: length only; cookies, timings and counters differ) */
static int value_printed(int level, int name) {
    if (level == SOL_SOCKET)
        return name == SO_REUSEADDR || name == SO_REUSEPORT || name == SO_KEEPALIVE || name == SO_BROADCAST ||
               name == SO_TYPE || name == SO_PROTOCOL || name == SO_DOMAIN || name == SO_ACCEPTCONN ||
               name == SO_ERROR || name == SO_BINDTODEVICE || name == SO_SNDBUF || name == SO_RCVBUF;
    if (level == IPPROTO_IP) return name == IP_BIND_ADDRESS_NO_PORT || name == IP_LOCAL_PORT_RANGE || name == IP_TTL || name == IP_TOS;
    if (level == IPPROTO_IPV6) return name == IPV6_V6ONLY;
    if (level == IPPROTO_TCP) return name == TCP_NODELAY || name == TCP_CONGESTION;
    return 0;
}

static unsigned char vbuf[64];
static void pick_opt(int *level, int *name, int *kind) {
    if (P(90)) {
        const struct opt *o = &opts[R(NOPTS)];
        *level = o->level, *name = o->name, *kind = o->kind;
    } else {
        static const int levels[] = {SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, 1000, -1};
        *level = levels[R(7)];
        *name = R(80);
        *kind = K_BYTES;
        /* options that would make later calls block or signal */
        if (*level == SOL_SOCKET && (*name == SO_LINGER || *name == SO_SNDTIMEO_OLD || *name == SO_RCVTIMEO_OLD ||
                                     *name == SO_ATTACH_FILTER || *name == SO_ATTACH_BPF))
            *name = SO_KEEPALIVE, *kind = K_INT;
        if (*level == IPPROTO_TCP && (*name == TCP_REPAIR || *name == TCP_REPAIR_QUEUE || *name == TCP_ULP))
            *name = TCP_NODELAY, *kind = K_INT;
        /* README "Intended differences": a UDP socket whose port connectx shares is in a
         * reuseport group, which these options see (ENOENT for EINVAL, a program steering it) */
        if (*level == SOL_SOCKET && (*name == 51 || *name == 52 || *name == 68))
            *name = SO_KEEPALIVE, *kind = K_INT;
    }
}

static void do_setsockopt(void) {
    int fd = pick_fd(), level, name, kind;
    pick_opt(&level, &name, &kind);
    socklen_t len = 4;
    memset(vbuf, 0, sizeof vbuf);
    switch (kind) {
    case K_INT: {
        static const int vals[] = {0, 1, 1, 0, 1, -1, 2, 7, 1 << 20, 0x7fffffff};
        int v = vals[R(10)];
        memcpy(vbuf, &v, 4);
        break;
    }
    case K_LINGER: {
        struct linger l = {R(2), 0};
        memcpy(vbuf, &l, sizeof l);
        len = sizeof l;
        break;
    }
    case K_RANGE: {
        uint32_t lo = P(70) ? 40000 + R(1000) : R(65536), hi = P(70) ? 40000 + R(1000) : R(65536);
        uint32_t v = lo | hi << 16;
        memcpy(vbuf, &v, 4);
        break;
    }
    case K_STR: {
        static const char *s[] = {"lo", "", "nope0", "reno", "cubic", "bogus"};
        const char *v = s[R(6)];
        strcpy((char *)vbuf, v);
        len = strlen(v) + R(2);
        break;
    }
    case K_TV: {
        long tv[2] = {R(3), R(1000)};
        memcpy(vbuf, tv, sizeof tv);
        len = sizeof tv;
        break;
    }
    default:
        for (int i = 0; i < 16; i++) vbuf[i] = R(256);
        len = R(17);
    }
    int lr = R(100);
    if (lr < 6) len = R(4);
    else if (lr < 10) len = 8 + R(9);
    if (level == IPPROTO_TCP && (name == TCP_NODELAY || name == TCP_CORK)) {
        /* Segments held back (Nagle, cork) go out when a delayed ACK comes back, which is a
         * matter of timing: every TCP socket has TCP_NODELAY (relocate) and keeps it. */
        int v = name == TCP_NODELAY;
        memcpy(vbuf, &v, 4);
    }
    const void *vp = vbuf;
    if (P(4)) vp = NULL;
    else if (guard && P(30)) {
        int avail = 1 + R(8);
        memcpy(gpage + 4096 - avail, vbuf, avail);
        vp = gpage + 4096 - avail;
    }
    out("setsockopt(%d, %d, %d, %s, %u)", fd, level, name, vp ? "v" : "NULL", len);
    errno = 0;
    int r = setsockopt(fd, level, name, vp, len);
    res(r, errno);
}

static void do_getsockopt(void) {
    int fd = pick_fd(), level, name, kind;
    pick_opt(&level, &name, &kind);
    static const socklen_t lens[] = {4, 4, 4, 0, 1, 2, 8, 16, 64, 0xffffffffu};
    socklen_t len = lens[R(10)];
    unsigned char v[128];
    memset(v, 0xAA, sizeof v);
    void *vp = v;
    socklen_t *lp_ = &len;
    if (P(4)) vp = NULL;
    if (P(3)) lp_ = NULL;
    out("getsockopt(%d, %d, %d, %s, %d)", fd, level, name, vp ? "v" : "NULL", (int)len);
    errno = 0;
    int r = getsockopt(fd, level, name, vp, lp_);
    res(r, errno);
    if (r == 0 && lp_) {
        out(" len %u", len);
        if (vp && value_printed(level, name)) {
            out(" val");
            for (socklen_t i = 0; i < len && i < 20; i++) out(" %02x", v[i]);
        }
    }
}

/* ---------- sockets ---------- */
static void do_socket(void) {
    static const int fams[] = {AF_INET, AF_INET, AF_INET6, AF_INET6, AF_UNIX, AF_NETLINK, AF_PACKET, 77};
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET, 9};
    int fam = fams[R(8)], type = types[R(7)], proto = 0;
    int pr = R(100);
    if (pr < 10) proto = type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
    else if (pr < 14) proto = IPPROTO_SCTP;
    else if (pr < 18) proto = R(300);
    if (type == SOCK_RAW && fam != AF_NETLINK && fam != AF_PACKET && proto == 0) proto = IPPROTO_ICMP;
    if (P(30)) type |= SOCK_NONBLOCK;
    if (P(30)) type |= SOCK_CLOEXEC;
    if (P(2)) type |= 0x40000; /* bad flag */
    int to = pick_target();
    out("socket(%d, %#x, %d) to %d", fam, type, proto, to);
    errno = 0;
    int fd = socket(fam, type, proto);
    int e = errno;
    res(fd < 0 ? -1 : 0, e);
    if (fd >= 0) {
        if (to >= SLOT0 && to < SLOT0 + NSLOT) relocate(fd, to);
        else close(fd);
    }
}

static void do_socketpair(void) {
    static const int fams[] = {AF_UNIX, AF_UNIX, AF_INET, AF_INET6};
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_RAW};
    int fam = fams[R(4)], type = types[R(4)] | (P(30) ? SOCK_NONBLOCK : 0);
    int sv[2] = {-1, -1};
    int null = P(5);
    int t1 = SLOT0 + R(NSLOT), t2 = SLOT0 + R(NSLOT);
    if (t2 == t1) t2 = SLOT0 + (t1 - SLOT0 + 1) % NSLOT;
    out("socketpair(%d, %#x, 0, %s) to %d %d", fam, type, null ? "NULL" : "sv", t1, t2);
    errno = 0;
    int r = socketpair(fam, type, 0, null ? NULL : sv);
    res(r, errno);
    if (r == 0) {
        relocate(sv[0], t1);
        relocate(sv[1], t2);
    }
}

static int v6_of(int fd) {
    int t = 0;
    socklen_t tl = sizeof t;
    dgram_dest = syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &t, &tl) == 0 && t == SOCK_DGRAM;
    int d = 0;
    socklen_t l = sizeof d;
    if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &d, &l) < 0) return 0;
    return d == AF_INET6;
}
static int type_of(int fd) {
    int d = 0;
    socklen_t l = sizeof d;
    if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &d, &l) < 0) return -1;
    return d;
}

static void do_bind(void) {
    int fd = pick_fd();
    gen_addr(1, v6_of(fd));
    int i = pool_index(a_port);
    /* model: a port held by a socket that connected or sent is never bound again */
    out(" bind(%d)", fd);
    errno = 0;
    int r = bind(fd, aptr, alen);
    res(r, errno);
    int s = slot_of(fd);
    if (r == 0 && s >= 0 && i >= 0) {
        fixed_port[s] = a_port;
        port_holders[i]++;
    }
}

static int would_block_connect(int fd) {
    /* blocking TCP connect to a port that may be listening with a full queue: avoided by
     * listen backlogs >= 1024; nothing else blocks on loopback */
    (void)fd;
    return 0;
}

static void do_connect(void) {
    int fd = pick_fd();
    gen_addr(0, v6_of(fd));
    int s = slot_of(fd);
    if (s >= 0 && fixed_port[s] && type_of(fd) == SOCK_DGRAM && port_shared(s)) {
        out(" connect(%d) skipped (shared fixed UDP port)", fd);
        return;
    }
    if (would_block_connect(fd)) return;
    taint(fd);
    out(" connect(%d)", fd);
    errno = 0;
    int r = connect(fd, aptr, alen);
    res(r, errno);
}

static void do_listen(void) {
    int fd = pick_fd();
    static const int bl[] = {-1, 1024, 4096, 2000};
    int b = bl[R(4)];
    /* model: a port a connection went out from is never listened on again (its TIME_WAIT carries
     * connectx's SO_REUSEADDR, so a listener with SO_REUSEADDR may take the port: README) */
    int s = slot_of(fd), i = s >= 0 ? pool_index(fixed_port[s]) : -1;
    if ((fd == HARN0 || fd == HARN0 + 1) && port_tainted[NPORTS]) i = NPORTS;
    if (i >= 0 && port_tainted[i]) {
        out("listen(%d) skipped (a connection went out from its port)", fd);
        return;
    }
    out("listen(%d, %d)", fd, b);
    errno = 0;
    int r = listen(fd, b);
    res(r, errno);
}

static void do_getsockname(void) {
    int fd = pick_fd();
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    static const socklen_t lens[] = {sizeof a, sizeof a, 16, 28, 0, 1, 8};
    socklen_t len = lens[R(7)], cap = len;
    int nulla = P(4), nulll = P(3);
    out("getsockname(%d, %s, %d)", fd, nulla ? "NULL" : "a", nulll ? -1 : (int)len);
    errno = 0;
    int r = getsockname(fd, nulla ? NULL : (struct sockaddr *)&a, nulll ? NULL : &len);
    res(r, errno);
    if (r == 0) {
        out(" len %u", len);
        if (!nulla) norm_addr((struct sockaddr *)&a, len, cap);
    }
}

static void do_close(void) {
    int fd = P(90) ? SLOT0 + R(NSLOT) : (P(50) ? SPEC0 + R(12) : 700 + R(10));
    out("close(%d)", fd);
    errno = 0;
    int r = close(fd);
    res(r, errno);
    slot_forget(fd);
}

static void do_close_range(void) {
    unsigned a = SLOT0 + R(130), b = a + R(8);
    if (P(5)) b = a - 1 - R(3);
    if (b > 620) b = 620;
    static const int fl[] = {0, 0, CLOSE_RANGE_CLOEXEC, CLOSE_RANGE_UNSHARE, 0x100};
    int f = fl[R(5)];
    out("close_range(%u, %u, %#x)", a, b, f);
    errno = 0;
    int r = close_range(a, b, f);
    res(r, errno);
    if (r == 0 && !(f & CLOSE_RANGE_CLOEXEC))
        for (unsigned x = a; x <= b && x < SLOT0 + NSLOT; x++) slot_forget(x);
}

static void do_dup(void) {
    int fd = pick_fd(), to = SLOT0 + R(NSLOT), kind = R(5), r;
    errno = 0;
    switch (kind) {
    case 0:
        out("dup(%d) to %d", fd, to);
        r = dup(fd);
        res(r < 0 ? -1 : 0, errno);
        if (r >= 0) relocate(r, to);
        break;
    case 1: {
        int t = pick_target();
        if (P(10)) t = fd;
        out("dup2(%d, %d)", fd, t);
        r = dup2(fd, t);
        res(r, errno);
        if (r >= 0 && t != fd) slot_forget(t);
        break;
    }
    case 2: {
        int t = pick_target();
        if (P(10)) t = fd;
        static const int fl[] = {0, O_CLOEXEC, 0x1234};
        int f = fl[R(3)];
        out("dup3(%d, %d, %#x)", fd, t, f);
        r = dup3(fd, t, f);
        res(r, errno);
        if (r >= 0) slot_forget(t);
        break;
    }
    default: {
        int cmd = P(50) ? F_DUPFD : F_DUPFD_CLOEXEC;
        int min = SLOT0 + R(NSLOT);
        int use64 = kind == 4;
        out("%s(%d, %d, %d)", use64 ? "fcntl64" : "fcntl", fd, cmd, min);
        r = use64 ? fcntl64(fd, cmd, min) : fcntl(fd, cmd, min);
        res(r, errno);
        if (r >= 0) slot_forget(r);
        break;
    }
    }
}

static void do_fcntl(void) {
    int fd = pick_fd(), use64 = P(50);
    static const int cmds[] = {F_GETFL, F_SETFL, F_GETFD, F_SETFD, F_SETFL, F_GETOWN, F_GETPIPE_SZ, 1033, 9999};
    int cmd = cmds[R(9)];
    long arg = 0;
    if (cmd == F_SETFL) arg = (P(50) ? O_NONBLOCK : 0) | (P(10) ? O_APPEND : 0);
    if (cmd == F_SETFD) arg = R(2) ? FD_CLOEXEC : 0;
    out("%s(%d, %d, %#lx)", use64 ? "fcntl64" : "fcntl", fd, cmd, arg);
    errno = 0;
    int r = use64 ? fcntl64(fd, cmd, arg) : fcntl(fd, cmd, arg);
    res(r, errno);
}

static void do_accept(void) {
    int fd = pick_fd(), to = SLOT0 + R(NSLOT), use4 = P(50);
    /* never block: skip a blocking listener with nothing queued (raw calls, not printed) */
    int acc = 0;
    socklen_t l = sizeof acc;
    if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) == 0 && acc) {
        int fl = syscall(SYS_fcntl, fd, F_GETFL, 0);
        struct pollfd p = {fd, POLLIN, 0};
        if (!(fl & O_NONBLOCK) && poll(&p, 1, 0) != 1) {
            out("accept(%d) skipped (would block)", fd);
            return;
        }
    }
    struct sockaddr_storage a;
    socklen_t len = P(80) ? sizeof a : R(20), cap = len;
    int nulla = P(10);
    int f = use4 ? (P(50) ? SOCK_NONBLOCK : 0) | (P(30) ? SOCK_CLOEXEC : 0) | (P(3) ? 0x1000 : 0) : 0;
    out("%s(%d, %s, %u, %#x) to %d", use4 ? "accept4" : "accept", fd, nulla ? "NULL" : "a", len, f, to);
    errno = 0;
    int r = use4 ? accept4(fd, nulla ? NULL : (struct sockaddr *)&a, nulla ? NULL : &len, f)
                 : accept(fd, nulla ? NULL : (struct sockaddr *)&a, nulla ? NULL : &len);
    res(r < 0 ? -1 : 0, errno);
    if (r >= 0) {
        if (!nulla) {
            out(" len %u", len);
            norm_addr((struct sockaddr *)&a, len, cap);
        }
        relocate(r, to);
    }
}

static int send_flags(void) {
    int f = MSG_DONTWAIT | MSG_NOSIGNAL;
    if (P(8)) f |= MSG_FASTOPEN;
    if (P(5)) f |= MSG_MORE;
    if (P(3)) f |= MSG_OOB;
    if (P(3)) f |= MSG_CONFIRM;
    return f;
}

static char payload[256];
static void do_send(void) {
    int fd = pick_fd(), kind = R(3), f = send_flags();
    int withaddr = P(60);
    int s = slot_of(fd);
    if (withaddr) {
        gen_addr(0, v6_of(fd));
        if (s >= 0 && fixed_port[s] && type_of(fd) == SOCK_DGRAM && port_shared(s) && (f & MSG_FASTOPEN)) f &= ~MSG_FASTOPEN;
    } else {
        aptr = NULL;
        alen = 0;
    }
    taint(fd);
    size_t n = R(48);
    const void *buf = P(4) ? NULL : payload;
    errno = 0;
    long r;
    if (kind == 0) {
        out(" sendto(%d, %s, %zu, %#x)", fd, buf ? "b" : "NULL", n, f);
        r = sendto(fd, buf, n, f, aptr, alen);
    } else {
        struct iovec iov[2] = {{(void *)buf, n}, {payload + 100, R(8)}};
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_name = (void *)aptr;
        m.msg_namelen = alen;
        m.msg_iov = iov;
        m.msg_iovlen = 1 + R(2);
        char cbuf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        if (P(10)) {
            memset(cbuf, 0, sizeof cbuf);
            struct cmsghdr *c = (void *)cbuf;
            c->cmsg_level = P(50) ? IPPROTO_IP : R(300);
            c->cmsg_type = P(50) ? IP_TTL : R(30);
            c->cmsg_len = CMSG_LEN(P(50) ? sizeof(int) : R(12));
            *(int *)CMSG_DATA(c) = 1 + R(255);
            m.msg_control = cbuf;
            m.msg_controllen = sizeof cbuf;
        }
        if (kind == 1) {
            int nullm = P(3);
            out(" sendmsg(%d, %s, iov %zu, ctl %zu, %#x)", fd, nullm ? "NULL" : "m", m.msg_iovlen, m.msg_controllen, f);
            r = sendmsg(fd, nullm ? NULL : &m, f);
        } else {
            struct mmsghdr mm[3];
            unsigned vlen = R(4);
            for (int i = 0; i < 3; i++) mm[i].msg_hdr = m, mm[i].msg_len = 0;
            int nullm = P(3);
            out(" sendmmsg(%d, %s, %u, %#x)", fd, nullm ? "NULL" : "mm", vlen, f);
            r = sendmmsg(fd, nullm ? NULL : mm, vlen, f);
            if (r > 0) for (long i = 0; i < r; i++) out(" len%ld=%u", i, mm[i].msg_len);
        }
    }
    res(r, errno);
}

static void do_recv(void) {
    int fd = pick_fd(), kind = R(4);
    int f = MSG_DONTWAIT | (P(10) ? MSG_PEEK : 0) | (P(5) ? MSG_TRUNC : 0) | (P(5) ? MSG_ERRQUEUE : 0) |
            (P(3) ? MSG_OOB : 0) | (P(3) ? MSG_WAITALL : 0);
    char buf[128];
    memset(buf, 0, sizeof buf);
    size_t n = P(10) ? 0 : 1 + R(127);
    void *bp = P(4) ? NULL : buf;
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    socklen_t al = P(70) ? sizeof a : R(30), cap = al;
    int nulla = P(10);
    long r;
    errno = 0;
    if (kind == 0) {
        out("recv(%d, %s, %zu, %#x)", fd, bp ? "b" : "NULL", n, f);
        r = recv(fd, bp, n, f);
        res(r, errno);
    } else if (kind == 1) {
        out("recvfrom(%d, %s, %zu, %#x, %s, %u)", fd, bp ? "b" : "NULL", n, f, nulla ? "NULL" : "a", al);
        r = recvfrom(fd, bp, n, f, nulla ? NULL : (struct sockaddr *)&a, nulla ? NULL : &al);
        res(r, errno);
        if (r >= 0 && !nulla) {
            out(" alen %u", al);
            norm_addr((struct sockaddr *)&a, al, cap);
        }
    } else {
        struct iovec iov = {bp, n};
        char cbuf[256];
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_name = nulla ? NULL : &a;
        m.msg_namelen = al;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = P(50) ? cbuf : NULL;
        m.msg_controllen = m.msg_control ? sizeof cbuf : 0;
        if (kind == 2) {
            out("recvmsg(%d, n %zu, %#x, name %s %u)", fd, n, f, nulla ? "NULL" : "a", al);
            r = recvmsg(fd, &m, f);
            res(r, errno);
            if (r >= 0) {
                out(" flags %#x namelen %u", m.msg_flags, m.msg_namelen);
                if (!nulla) norm_addr((struct sockaddr *)&a, m.msg_namelen, cap);
            }
        } else {
            struct mmsghdr mm[2];
            mm[0].msg_hdr = m, mm[1].msg_hdr = m;
            unsigned vlen = R(3);
            struct timespec ts = {0, 0};
            out("recvmmsg(%d, %u, %#x)", fd, vlen, f);
            r = recvmmsg(fd, mm, vlen, f, P(50) ? &ts : NULL);
            res(r, errno);
            for (long i = 0; i < r; i++) out(" len%ld=%u", i, mm[i].msg_len);
        }
    }
    int dom = 0, typ = type_of(fd);
    socklen_t dl = sizeof dom;
    syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl);
    /* raw and packet sockets see IP headers (random IP ids, checksums): length only */
    int plain = (dom == AF_INET || dom == AF_INET6 || dom == AF_UNIX) && typ != SOCK_RAW;
    if (r > 0 && bp && kind < 3 && plain) {
        out(" data");
        for (long i = 0; i < r && i < (long)n && i < 24; i++) out(" %02x", (unsigned char)buf[i]);
    }
}

/* ---------- setup ---------- */
static void must(int ok, const char *what) {
    if (!ok) { printf("harness_error %s %s\n", what, strerror(errno)); exit(3); }
}
static void setup(void) {
    int fd;
    /* specials 600..611: non-socket fds and sockets connectx leaves alone */
    fd = open("/dev/null", O_RDWR); must(fd >= 0, "devnull"); relocate(fd, SPEC0);
    int p[2]; must(pipe(p) == 0, "pipe"); relocate(p[0], SPEC0 + 1); relocate(p[1], SPEC0 + 2);
    int sv[2]; must(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0, "socketpair"); relocate(sv[0], SPEC0 + 3); relocate(sv[1], SPEC0 + 4);
    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE); must(fd >= 0, "netlink"); relocate(fd, SPEC0 + 5);
    fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); must(fd >= 0, "raw"); relocate(fd, SPEC0 + 6);
    fd = socket(AF_INET, SOCK_STREAM, 0); must(fd >= 0, "tcp"); relocate(fd, SPEC0 + 7);
    fd = socket(AF_INET, SOCK_DGRAM, 0); must(fd >= 0, "udp"); relocate(fd, SPEC0 + 8);
    fd = socket(AF_INET6, SOCK_STREAM, 0); must(fd >= 0, "tcp6"); relocate(fd, SPEC0 + 9);
    fd = socket(AF_INET6, SOCK_DGRAM, 0); must(fd >= 0, "udp6"); relocate(fd, SPEC0 + 10);
    fd = socket(AF_PACKET, SOCK_DGRAM, 0); must(fd >= 0, "packet"); relocate(fd, SPEC0 + 11);
    /* Whether a TIME_WAIT 4-tuple may be reused depends on its age (tcp_tw_reuse waits a
     * second): never, in this namespace, so the answer does not depend on timing. */
    int tw = open("/proc/sys/net/ipv4/tcp_tw_reuse", O_WRONLY);
    must(tw >= 0 && write(tw, "0\n", 2) == 2, "tcp_tw_reuse");
    close(tw);
    /* harness servers 650..653: TCP listeners and UDP sinks on 127.0.0.1 and ::1, port 7000/7001 */
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(7000)};
    inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(7000), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int one = 1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    must(fd >= 0 && bind(fd, (void *)&a4, sizeof a4) == 0 && listen(fd, 4096) == 0, "listener4"); relocate(fd, HARN0);
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    must(fd >= 0 && bind(fd, (void *)&a6, sizeof a6) == 0 && listen(fd, 4096) == 0, "listener6"); relocate(fd, HARN0 + 1);
    a4.sin_port = htons(7001);
    a6.sin6_port = htons(7001);
    fd = socket(AF_INET, SOCK_DGRAM, 0); must(fd >= 0 && bind(fd, (void *)&a4, sizeof a4) == 0, "sink4"); relocate(fd, HARN0 + 2);
    fd = socket(AF_INET6, SOCK_DGRAM, 0);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    must(fd >= 0 && bind(fd, (void *)&a6, sizeof a6) == 0, "sink6"); relocate(fd, HARN0 + 3);
    for (int i = 0; i < (int)sizeof payload; i++) payload[i] = 'a' + i % 26;
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    must(m != MAP_FAILED, "mmap");
    must(mprotect(m + 4096, 4096, PROT_NONE) == 0, "mprotect");
    gpage = m;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: fuzz SEED CALLS [guard]\n"); return 2; }
    rs = strtoull(argv[1], NULL, 0) * 2654435761u + 88172645463325252ull;
    long calls = atol(argv[2]);
    guard = argc > 3 && !strcmp(argv[3], "guard");
    signal(SIGPIPE, SIG_IGN);
    alarm(calls / 200 + 60);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOLBF, sizeof obuf); /* a crash keeps every line printed before it */
    setup();
    for (long i = 0; i < calls; i++) {
        lp = 0;
        out("%ld ", i);
        int op = R(100);
        if (op < 10) do_socket();
        else if (op < 12) do_socketpair();
        else if (op < 22) do_bind();
        else if (op < 32) do_connect();
        else if (op < 35) do_listen();
        else if (op < 45) do_setsockopt();
        else if (op < 55) do_getsockopt();
        else if (op < 61) do_getsockname();
        else if (op < 67) do_close();
        else if (op < 68) do_close_range();
        else if (op < 73) do_dup();
        else if (op < 77) do_fcntl();
        else if (op < 81) do_accept();
        else if (op < 91) do_send();
        else do_recv();
        puts(line);
    }
    printf("done %ld\n", calls);
    return 0;
}
