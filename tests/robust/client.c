/* client: small legacy-style client used by the fault and security tests.
 *   client [--deny-netlink] udp D N BIND   UDP connects (BIND=1: bind(127.0.0.1,0) first) to D
 *                                          echo servers 127.0.0.2..D+1:7, round robin, at most N;
 *                                          then every connected socket must echo.
 *   client [--deny-netlink] tcp D N        TCP bind(127.0.0.1,0) + connect to D listeners
 *   client gsn                             bind(127.0.0.1,0) then getsockname (UDP and TCP)
 * Options, before the mode:
 *   --deny-netlink          socket(AF_NETLINK) fails with EPERM (seccomp)
 *   --deny-sockopt LEVEL N  getsockopt/setsockopt(LEVEL, N) fail with ENOPROTOOPT (seccomp), as
 *                           on a kernel without that option
 *   --port-range LO HI      every UDP socket sets IP_LOCAL_PORT_RANGE [LO, HI] first
 * Prints key=value words; exit 0 unless the harness itself fails (exit 2). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include "inet.h"

#if defined(__x86_64__)
#define MY_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define MY_ARCH AUDIT_ARCH_AARCH64
#else
#error "add this architecture"
#endif

#define MAXS 4096

static void fail(const char *what) {
    printf("harness_error=%s errno=%d\n", what, errno);
    fflush(stdout);
    exit(2);
}

/* socket(AF_NETLINK, ...) fails with EPERM from now on (SOCK_DIAG and RTM_GETROUTE unavailable). */
static void deny_netlink(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MY_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) fail("PR_SET_SECCOMP");
    int s = socket(AF_NETLINK, SOCK_RAW, 4);
    printf("netlink_denied=%d\n", s < 0 && errno == EPERM);
    if (s >= 0) close(s);
}

/* getsockopt and setsockopt of (level, name) fail with ENOPROTOOPT from now on, as they do on a
 * kernel that does not know the option. */
static void deny_sockopt(int level, int name) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MY_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getsockopt, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setsockopt, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)level, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)name, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOPROTOOPT),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) fail("PR_SET_SECCOMP");
    int s = socket(AF_INET, SOCK_DGRAM, 0), v = 0;
    socklen_t l = sizeof v;
    printf("sockopt_denied=%d\n", getsockopt(s, level, name, &v, &l) < 0 && errno == ENOPROTOOPT);
    close(s);
}

#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif
static int prange_lo, prange_hi, prange_err = -1;

static void dest_ip(int i, char *buf) { sprintf(buf, "127.0.0.%d", 2 + i); }

static void timeout(int s, int ms) {
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static int range_lo, range_hi;
static void read_range(void) {
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (!f || fscanf(f, "%d %d", &range_lo, &range_hi) != 2) fail("ip_local_port_range");
    fclose(f);
}

static int udp(int d, int n, int bind_first) {
    static int cs[MAXS], dst[MAXS];
    int srv[64];
    char ip[32];
    for (int i = 0; i < d; i++) {
        srv[i] = socket(AF_INET, SOCK_DGRAM, 0);
        dest_ip(i, ip);
        struct sockaddr_in a = sin4(ip, 7);
        if (srv[i] < 0 || bind(srv[i], (struct sockaddr *)&a, sizeof a) < 0) fail("server bind");
        timeout(srv[i], 2000);
    }
    int k = 0, err = 0, where = 0;
    for (; k < n && k < MAXS; k++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (s < 0) fail("socket");
        if (prange_lo) {
            unsigned v = prange_lo | (unsigned)prange_hi << 16;
            int r = setsockopt(s, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &v, sizeof v) < 0 ? errno : 0;
            if (prange_err < 0) prange_err = r;
        }
        if (bind_first) {
            struct sockaddr_in a = sin4("127.0.0.1", 0);
            if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
                err = errno, where = 'b';
                close(s);
                break;
            }
        }
        dest_ip(k % d, ip);
        struct sockaddr_in a = sin4(ip, 7);
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
            err = errno, where = 'c';
            close(s);
            break;
        }
        cs[k] = s;
        dst[k] = k % d;
    }
    int echoed = 0, inrange = 0, in_sock_range = 0;
    for (int i = 0; i < k; i++) {
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        if (getsockname(cs[i], (struct sockaddr *)&me, &ml) == 0 && ntohs(me.sin_port) >= range_lo &&
            ntohs(me.sin_port) <= range_hi && me.sin_addr.s_addr == htonl(0x7f000001))
            inrange++;
        if (ntohs(me.sin_port) >= prange_lo && ntohs(me.sin_port) <= prange_hi) in_sock_range++;
        char msg[16], got[16] = {0};
        snprintf(msg, sizeof msg, "m%d", i);
        if (send(cs[i], msg, strlen(msg), 0) < 0) continue;
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        char buf[16] = {0};
        ssize_t r = recvfrom(srv[dst[i]], buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (r <= 0) continue;
        sendto(srv[dst[i]], buf, r, 0, (struct sockaddr *)&from, fl);
        timeout(cs[i], 2000);
        r = recv(cs[i], got, sizeof got - 1, 0);
        if (r > 0 && strcmp(got, msg) == 0) echoed++;
    }
    printf("connected=%d errno=%d failed_in=%s echoed=%d inrange=%d\n", k, err,
           where == 'b' ? "bind" : where == 'c' ? "connect" : "none", echoed, inrange);
    if (prange_lo) printf("prange_set=%d in_sock_range=%d\n", prange_err, in_sock_range);
    return 0;
}

static int tcp(int d, int n) {
    int lst[64];
    char ip[32];
    for (int i = 0; i < d; i++) {
        lst[i] = socket(AF_INET, SOCK_STREAM, 0);
        dest_ip(i, ip);
        struct sockaddr_in a = sin4(ip, 80);
        if (lst[i] < 0 || bind(lst[i], (struct sockaddr *)&a, sizeof a) < 0 || listen(lst[i], 4096) < 0)
            fail("listener");
    }
    int k = 0, err = 0, where = 0;
    for (; k < n; k++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) fail("socket");
        struct sockaddr_in a = sin4("127.0.0.1", 0);
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
            err = errno, where = 'b';
            close(s);
            break;
        }
        dest_ip(k % d, ip);
        a = sin4(ip, 80);
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
            err = errno, where = 'c';
            close(s);
            break;
        }
    }
    printf("tcp_connected=%d tcp_errno=%d tcp_failed_in=%s\n", k, err,
           where == 'b' ? "bind" : where == 'c' ? "connect" : "none");
    return 0;
}

static int gsn(void) {
    int types[2] = {SOCK_DGRAM, SOCK_STREAM};
    const char *names[2] = {"udp", "tcp"};
    for (int i = 0; i < 2; i++) {
        int s = socket(AF_INET, types[i], 0);
        struct sockaddr_in a = sin4("127.0.0.1", 0);
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) fail("gsn bind");
        socklen_t l = sizeof a;
        if (getsockname(s, (struct sockaddr *)&a, &l) < 0) fail("getsockname");
        printf("%s_gsn_port=%d\n", names[i], ntohs(a.sin_port));
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int i = 1;
    for (;;) {
        if (i < argc && !strcmp(argv[i], "--deny-netlink")) {
            deny_netlink();
            i++;
        } else if (i + 2 < argc && !strcmp(argv[i], "--deny-sockopt")) {
            deny_sockopt(atoi(argv[i + 1]), atoi(argv[i + 2]));
            i += 3;
        } else if (i + 2 < argc && !strcmp(argv[i], "--port-range")) {
            prange_lo = atoi(argv[i + 1]);
            prange_hi = atoi(argv[i + 2]);
            i += 3;
        } else {
            break;
        }
    }
    read_range();
    if (i + 3 < argc + 0 && !strcmp(argv[i], "udp")) return udp(atoi(argv[i + 1]), atoi(argv[i + 2]), atoi(argv[i + 3]));
    if (i + 2 < argc && !strcmp(argv[i], "tcp")) return tcp(atoi(argv[i + 1]), atoi(argv[i + 2]));
    if (i < argc && !strcmp(argv[i], "gsn")) return gsn();
    fprintf(stderr, "usage: client [--deny-netlink] [--deny-sockopt LEVEL N] [--port-range LO HI] udp D N BIND | tcp D N | gsn\n");
    return 2;
}
