/* exclusivity: a port a program holds exclusively (a server, or a UDP socket that is not
 * connected) must stay its own when another process runs with or without connectx.
 *   exclusivity LIB SCENARIO     (SCENARIO: tcp | udp | tcp-restart | udp-inrange | udp-disconnect)
 * This process plays the holder (run it with or without LD_PRELOAD); every "intruder" is a
 * child started twice: once with LD_PRELOAD=LIB and once without. Prints one line per case:
 *   case=<name> intruder=<lib|nolib> <result words>
 * so the harness can compare every line with the kernel-only run. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "inet.h"

static const char *LIB, *SELF;

static const char *en(int r) {
    static char b[8][32];
    static int i;
    i = (i + 1) % 8;
    if (r == 0) return "0";
    switch (r) {
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    }
    snprintf(b[i], sizeof b[i], "errno%d", r);
    return b[i];
}
static void die(const char *w) {
    printf("harness_error=%s errno=%d\n", w, errno);
    exit(2);
}

/* ---- intruder side (child) ---- */
/* intruder bind PROTO IP PORT REUSE [DST_IP DST_PORT]: bind (and connect if bound), report,
 * hold the socket until stdin closes. */
static int intruder_bind(char **a, int n) {
    int udp = !strcmp(a[0], "udp");
    int s = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    int reuse = atoi(a[3]);
    if (reuse) setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
    struct sockaddr_in b = sin4(a[1], atoi(a[2]));
    int r = bind(s, (struct sockaddr *)&b, sizeof b) < 0 ? errno : 0;
    printf("bind=%s", en(r));
    if (r == 0 && n > 5) {
        struct sockaddr_in d = sin4(a[4], atoi(a[5]));
        int c = connect(s, (struct sockaddr *)&d, sizeof d) < 0 ? errno : 0;
        printf(" connect=%s", en(c));
    }
    printf("\n");
    fflush(stdout);
    char buf[8];
    while (read(0, buf, sizeof buf) > 0) {}
    return 0;
}
/* intruder connects N DST_IP DST_PORT: plain UDP connects until one fails; hold them. */
static int intruder_connects(char **a) {
    int n = atoi(a[0]), k = 0, err = 0;
    struct sockaddr_in d = sin4(a[1], atoi(a[2]));
    for (; k < n; k++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (connect(s, (struct sockaddr *)&d, sizeof d) < 0) {
            err = errno;
            close(s);
            break;
        }
    }
    printf("connects=%d then=%s\n", k, en(err));
    fflush(stdout);
    char buf[8];
    while (read(0, buf, sizeof buf) > 0) {}
    return 0;
}

/* ---- holder side ---- */
struct child { pid_t pid; int in, out; };

static struct child spawn(int with_lib, char **args) {
    int to[2], from[2];
    if (pipe(to) < 0 || pipe(from) < 0) die("pipe");
    pid_t p = fork();
    if (p < 0) die("fork");
    if (p == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        char env0[4096];
        snprintf(env0, sizeof env0, "LD_PRELOAD=%s", LIB);
        char *envp[] = {with_lib ? env0 : NULL, NULL};
        char *argv[16];
        int i = 0;
        argv[i++] = (char *)SELF;
        argv[i++] = (char *)LIB;
        for (; *args && i < 15; args++) argv[i++] = *args;
        argv[i] = NULL;
        execve(SELF, argv, envp);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    struct child c = {p, to[1], from[0]};
    return c;
}
static void readline_from(struct child *c, char *buf, size_t n) {
    size_t i = 0;
    while (i + 1 < n) {
        char ch;
        if (read(c->out, &ch, 1) != 1 || ch == '\n') break;
        buf[i++] = ch;
    }
    buf[i] = 0;
}
static void finish(struct child *c) {
    close(c->in);
    close(c->out);
    int st;
    waitpid(c->pid, &st, 0);
}

static int peer; /* bound to 127.0.0.2:9: the "remote" of the UDP checks */
/* Sends one datagram from the peer to 127.0.0.1:port; 1 if `s` got it. */
static int delivered(int s, int port) {
    struct sockaddr_in to = sin4("127.0.0.1", port);
    sendto(peer, "hello", 5, 0, (struct sockaddr *)&to, sizeof to);
    usleep(20000);
    char buf[16];
    int got = 0;
    while (recv(s, buf, sizeof buf, MSG_DONTWAIT) > 0) got = 1;
    return got;
}

static void tcp_cases(void) {
    int port = 5000;
    for (int sr = 0; sr < 2; sr++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (sr) setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &sr, sizeof sr);
        struct sockaddr_in a = sin4("127.0.0.1", port);
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("tcp server bind");
        for (int phase = 0; phase < 2; phase++) {
            if (phase == 1 && listen(s, 16) < 0) die("listen");
            for (int ir = 0; ir < 2; ir++)
                for (int wild = 0; wild < 2; wild++)
                    for (int lib = 1; lib >= 0; lib--) {
                        char ps[16], rs[4];
                        snprintf(ps, sizeof ps, "%d", port);
                        snprintf(rs, sizeof rs, "%d", ir);
                        char *args[] = {"bind", "tcp", wild ? "0.0.0.0" : "127.0.0.1", ps, rs, NULL};
                        struct child c = spawn(lib, args);
                        char line[256];
                        readline_from(&c, line, sizeof line);
                        finish(&c);
                        printf("case=tcp/server_reuse=%d/%s/intruder_reuse=%d/%s intruder=%s %s\n", sr,
                               phase ? "listening" : "bound", ir, wild ? "wildcard" : "same_ip",
                               lib ? "lib" : "nolib", line);
                    }
        }
        close(s);
        port++;
    }
}

static void udp_cases(void) {
    int port = 5100;
    for (int sr = 0; sr < 2; sr++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (sr) setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &sr, sizeof sr);
        struct sockaddr_in a = sin4("127.0.0.1", port);
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("udp server bind");
        for (int ir = 0; ir < 2; ir++)
            for (int wild = 0; wild < 2; wild++)
                for (int lib = 1; lib >= 0; lib--) {
                    char ps[16], rs[4];
                    snprintf(ps, sizeof ps, "%d", port);
                    snprintf(rs, sizeof rs, "%d", ir);
                    char *args[] = {"bind", "udp", wild ? "0.0.0.0" : "127.0.0.1", ps, rs, "127.0.0.2", "9", NULL};
                    struct child c = spawn(lib, args);
                    char line[256];
                    readline_from(&c, line, sizeof line);
                    int got = delivered(s, port);
                    finish(&c);
                    printf("case=udp/server_reuse=%d/intruder_reuse=%d/%s intruder=%s %s server_got=%d\n", sr, ir,
                           wild ? "wildcard" : "same_ip", lib ? "lib" : "nolib", line, got);
                }
        close(s);
        port++;
    }
}

/* A server restarts while TIME_WAIT entries of its previous life hold its port (the usual
 * reason servers set SO_REUSEADDR). Between its bind and its listen, an intruder without
 * SO_REUSEADDR must get EADDRINUSE, and the server's listen must then succeed. */
static void tcp_restart(void) {
    int port = 5200;
    for (int lib = 1; lib >= 0; lib--) {
        int one = 1;
        int l = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = sin4("127.0.0.1", port);
        if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 16) < 0) die("first life");
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) die("first life connect");
        int acc = accept(l, NULL, NULL);
        if (acc < 0) die("accept");
        close(acc); /* the server closes first: TIME_WAIT on its port */
        usleep(20000);
        close(c);
        close(l);
        usleep(20000);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int rb = bind(s, (struct sockaddr *)&a, sizeof a) < 0 ? errno : 0;
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        char *args[] = {"bind", "tcp", "127.0.0.1", ps, "0", NULL};
        struct child ch = spawn(lib, args);
        char line[256];
        readline_from(&ch, line, sizeof line);
        int rl = listen(s, 16) < 0 ? errno : 0;
        finish(&ch);
        printf("case=tcp-restart/time_wait/server_bound intruder=%s server_bind=%s %s server_listen=%s\n",
               lib ? "lib" : "nolib", en(rb), line, en(rl));
        close(s);
        port++;
    }
}

/* A UDP server with SO_REUSEADDR bound to a port inside the ephemeral range. A client's plain
 * connect() would never be given that port by the kernel; it must not be given it by connectx
 * either (it would then receive the server's datagrams from that destination). */
static void udp_inrange(void) {
    for (int lib = 1; lib >= 0; lib--) {
        int one = 1;
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = sin4("127.0.0.1", 40005);
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("inrange bind");
        char *args[] = {"connects", "12", "127.0.0.2", "9", NULL};
        struct child c = spawn(lib, args);
        char line[256];
        readline_from(&c, line, sizeof line);
        int got = delivered(s, 40005);
        finish(&c);
        printf("case=udp-inrange/server_reuse=1 intruder=%s %s server_got=%d\n", lib ? "lib" : "nolib", line, got);
        close(s);
    }
}

/* A UDP socket bound by the program to a fixed port (here one inside the ephemeral range)
 * that connected and then disconnected (AF_UNSPEC) holds its port exclusively (kernel): no
 * other connect() may land on it, it receives from everyone, it can connect again. */
static void udp_disconnect(void) {
    for (int lib = 1; lib >= 0; lib--) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in me = sin4("127.0.0.1", 40005);
        if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) die("disconnect bind");
        struct sockaddr_in d = sin4("127.0.0.2", 9);
        if (connect(s, (struct sockaddr *)&d, sizeof d) < 0) die("disconnect connect");
        struct sockaddr un;
        memset(&un, 0, sizeof un);
        un.sa_family = AF_UNSPEC;
        int rd = connect(s, &un, sizeof un) < 0 ? errno : 0;
        char *args[] = {"connects", "12", "127.0.0.2", "9", NULL};
        struct child c = spawn(lib, args);
        char line[256];
        readline_from(&c, line, sizeof line);
        int got = delivered(s, 40005);
        int rc = connect(s, (struct sockaddr *)&d, sizeof d) < 0 ? errno : 0;
        finish(&c);
        printf("case=udp-disconnect/fixed_port_in_range intruder=%s disconnect=%s %s holder_got=%d reconnect=%s\n",
               lib ? "lib" : "nolib", en(rd), line, got, en(rc));
        close(s);
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    alarm(60);
    if (argc < 3) {
        fprintf(stderr, "usage: exclusivity LIB SCENARIO\n");
        return 2;
    }
    SELF = "/proc/self/exe";
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) { self[n] = 0; SELF = self; }
    LIB = argv[1];
    if (!strcmp(argv[2], "bind")) return intruder_bind(argv + 3, argc - 3);
    if (!strcmp(argv[2], "connects")) return intruder_connects(argv + 3);
    peer = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in pa = sin4("127.0.0.2", 9);
    if (bind(peer, (struct sockaddr *)&pa, sizeof pa) < 0) die("peer bind");
    if (!strcmp(argv[2], "tcp")) tcp_cases();
    else if (!strcmp(argv[2], "udp")) udp_cases();
    else if (!strcmp(argv[2], "tcp-restart")) tcp_restart();
    else if (!strcmp(argv[2], "udp-inrange")) udp_inrange();
    else if (!strcmp(argv[2], "udp-disconnect")) udp_disconnect();
    else { fprintf(stderr, "unknown scenario\n"); return 2; }
    return 0;
}
