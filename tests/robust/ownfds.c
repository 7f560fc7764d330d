/* ownfds: the library's own descriptors must never be mistaken for the program's (issue 10).
 * Run in a fresh network namespace (nsrun), with or without the library; prints key=value.
 *   ownfds closefrom-tcp [raw]
 *                          closefrom(3) (raw: the close_range system call itself), then TCP connections that take the lowest numbers, then a
 *                          UDP connect: every connection must still be open, get its peer's
 *                          bytes, and the peers must receive nothing they were not sent.
 *   ownfds closefrom-log FILE
 *                          UDP connects (log lines due), closefrom(3), the program opens FILE
 *                          (fd 3) and writes one line, more UDP connects: FILE must hold only it.
 *   ownfds forkfds THREADS FORKS
 *                          THREADS threads connect UDP sockets while the main thread forks FORKS
 *                          children; each child counts the netlink sockets it inherited (the
 *                          program makes none: any is the library's).
 *   ownfds netns           10 UDP sockets hold every port of the range to 127.0.0.2:7, then the
 *                          program moves to a new network namespace (same range) where no port
 *                          is held. A socket made there and connected from the first namespace
 *                          (no netlink socket of its own namespace yet) gets the kernel's
 *                          connect; the UDP connects in the new namespace must succeed (checked in that
 *                          namespace, not the one the library's netlink sockets were made in);
 *                          then one more such socket, connected after going back to the first
 *                          namespace: checked in its own namespace still (or left to the kernel):
 *                          it connects.
 *   ownfds rawfork         a child made by _Fork() (no fork handlers) makes a UDP connect: it
 *                          must connect, and then hold none of the parent's netlink sockets
 *                          (the library's port ids of the parent).
 *   ownfds firstfd         the number of the program's first open(), then of one after a UDP
 *                          connect (the library's first netlink sockets).
 * Exit 0 when the run completed (the test judges the values), 2 on a setup error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "inet.h"

static void die(const char *what) {
    printf("setup_error=%s errno=%d\n", what, errno);
    fflush(stdout);
    exit(2);
}

/* A UDP connect (the kernel's own; connectx then shares its port), and a reconnect of the same
 * socket to another port of the peer, which connectx checks through its netlink sockets
 * (SOCK_DIAG, RTM_GETROUTE). */
static int udp_connect(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return -1;
    struct sockaddr_in a = sin4(ip, port);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    if (r == 0) {
        a = sin4(ip, port + 1000);
        r = connect(s, (struct sockaddr *)&a, sizeof a);
    }
    close(s);
    return r;
}

#define PAIRS 6

static int closefrom_tcp(int raw) {
    /* The library's first netlink sockets (the pool) are made now. */
    if (udp_connect("127.0.0.2", 7) < 0) die("first udp connect");
    /* raw: the system call itself, past every hook (only identity checks can notice). */
    if (raw) syscall(SYS_close_range, 3U, ~0U, 0);
    else closefrom(3);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = sin4("127.0.0.1", 8080);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 16) < 0)
        die("listen");
    int cli[PAIRS], srv[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&a, sizeof a) < 0) die("tcp connect");
        srv[i] = accept(l, NULL, NULL);
        if (srv[i] < 0) die("accept");
        if (write(srv[i], "hello", 5) != 5) die("write");
    }
    printf("lowest_client_fd=%d\n", cli[0]);
    /* The next UDP connects: the library asks the kernel through its netlink sockets. */
    int udp_ok = 0;
    for (int i = 0; i < 3; i++) udp_ok += udp_connect("127.0.0.3", 7 + i) == 0;
    usleep(20000);
    int open_ok = 0, peer_ok = 0, hello_ok = 0, junk = 0;
    for (int i = 0; i < PAIRS; i++) {
        struct sockaddr_in p;
        socklen_t pl = sizeof p;
        char buf[256];
        open_ok += fcntl(cli[i], F_GETFD) >= 0;
        peer_ok += getpeername(cli[i], (struct sockaddr *)&p, &pl) == 0 && p.sin_port == htons(8080);
        ssize_t n = recv(cli[i], buf, sizeof buf, MSG_DONTWAIT);
        hello_ok += n == 5 && !memcmp(buf, "hello", 5);
        n = recv(srv[i], buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) junk += n;
    }
    printf("udp_ok=%d pairs=%d open=%d peer=%d hello=%d junk_bytes=%d\n", udp_ok, PAIRS, open_ok,
           peer_ok, hello_ok, junk);
    return 0;
}

static int closefrom_log(const char *file) {
    int udp_ok = 0;
    for (int i = 0; i < 3; i++) udp_ok += udp_connect("127.0.0.2", 7 + i) == 0;
    closefrom(3);
    int f = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (f < 0) die("open file");
    printf("file_fd=%d\n", f);
    if (write(f, "mine\n", 5) != 5) die("write file");
    for (int i = 0; i < 3; i++) udp_ok += udp_connect("127.0.0.3", 7 + i) == 0;
    close(f);
    printf("udp_ok=%d\n", udp_ok);
    return 0;
}

static atomic_int stop;
static atomic_long connects;

static void *connector(void *arg) {
    long id = (long)arg;
    char ip[32];
    snprintf(ip, sizeof ip, "127.0.0.%ld", 2 + id % 200);
    while (!atomic_load(&stop)) {
        if (udp_connect(ip, 7) == 0) atomic_fetch_add(&connects, 1);
    }
    return NULL;
}

/* In the child: the netlink sockets among its fds, read from /proc/self/fd (async-signal-safe
 * calls only: open, getdents64, getsockopt). */
static int netlink_fds(void) {
    int n = 0, dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return 101;
    char buf[8192];
    long got;
    while ((got = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        for (long at = 0; at < got;) {
            struct linux_dirent64 {
                unsigned long long ino;
                long long off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(buf + at);
            at += d->reclen;
            if (d->name[0] < '0' || d->name[0] > '9') continue;
            int fd = atoi(d->name), dom = 0;
            socklen_t l = sizeof dom;
            if (fd == dir) continue;
            if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 && dom == AF_NETLINK) n++;
        }
    }
    close(dir);
    return n;
}

static int forkfds(int threads, int forks) {
    pthread_t t[64];
    if (threads > 64) threads = 64;
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, connector, (void *)i)) die("pthread_create");
    while (atomic_load(&connects) < threads) usleep(1000);
    int leaky = 0, leaked = 0, done = 0;
    for (int i = 0; i < forks; i++) {
        pid_t p = fork();
        if (p < 0) die("fork");
        if (p == 0) {
            int n = netlink_fds();
            _exit(n > 100 ? 100 : n);
        }
        int st;
        if (waitpid(p, &st, 0) != p || !WIFEXITED(st)) die("waitpid");
        done++;
        if (WEXITSTATUS(st)) {
            leaky++;
            leaked += WEXITSTATUS(st);
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    printf("children=%d leaky_children=%d leaked_fds=%d connects=%ld\n", done, leaky, leaked,
           atomic_load(&connects));
    return 0;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die(path);
    close(fd);
}

static int netns(void) {
    int held = 0;
    for (int i = 0; i < 10; i++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = sin4("127.0.0.2", 7);
        held += connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = sin4("127.0.0.2", 7);
    int e = connect(s, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : errno;
    close(s);
    printf("held=%d eleventh_errno=%d\n", held, e);
    int first_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (first_ns < 0) die("open ns");
    if (unshare(CLONE_NEWNET) < 0) die("unshare");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    if (ioctl(c, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(c, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS");
    close(c);
    write_file("/proc/sys/net/ipv4/ip_local_port_range", "40000 40009");
    /* A socket of the new namespace connected from the first one before any check ran in the
     * new one: no netlink socket of its namespace can be had, so the kernel's own connect. */
    int new_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int early = socket(AF_INET, SOCK_DGRAM, 0);
    if (new_ns < 0 || setns(first_ns, CLONE_NEWNET) < 0) die("setns first");
    int early_ok = connect(early, (struct sockaddr *)&a, sizeof a) == 0;
    printf("early_connected=%d early_errno=%d\n", early_ok, early_ok ? 0 : errno);
    if (setns(new_ns, CLONE_NEWNET) < 0) die("setns new");
    int ok = 0, first_errno = 0;
    for (int i = 0; i < 5; i++) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        if (connect(u, (struct sockaddr *)&a, sizeof a) == 0) ok++;
        else if (!first_errno) first_errno = errno;
    }
    printf("new_ns_connected=%d new_ns_errno=%d\n", ok, first_errno);
    /* A socket of the new namespace, connected from a thread back in the first one: a netlink
     * socket of the new namespace (pooled) answers, or, with none, the kernel's own connect
     * (5 of the new namespace's 10 ports are free). */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (setns(first_ns, CLONE_NEWNET) < 0) die("setns");
    int back = connect(u, (struct sockaddr *)&a, sizeof a) == 0;
    printf("from_first_ns_connected=%d from_first_ns_errno=%d\n", back, back ? 0 : errno);
    return 0;
}

/* The inodes of this process's netlink sockets (fstat st_ino), up to `max`. */
static int netlink_inodes(unsigned long long *ino, int max) {
    int n = 0;
    for (int fd = 0; fd < 2048 && n < max; fd++) {
        int dom = 0;
        socklen_t l = sizeof dom;
        struct stat st;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 && dom == AF_NETLINK &&
            fstat(fd, &st) == 0)
            ino[n++] = st.st_ino;
    }
    return n;
}

static int rawfork(void) {
    if (udp_connect("127.0.0.2", 7) < 0) die("parent udp connect");
    unsigned long long parent[64], child[64];
    int np = netlink_inodes(parent, 64);
    pid_t p = _Fork();
    if (p < 0) die("_Fork");
    if (p == 0) {
        int ok = udp_connect("127.0.0.3", 7) == 0;
        int nc = netlink_inodes(child, 64), inherited = 0;
        for (int i = 0; i < nc; i++)
            for (int j = 0; j < np; j++) inherited += child[i] == parent[j];
        _exit(ok ? (inherited > 50 ? 50 : inherited) : 100);
    }
    int st;
    if (waitpid(p, &st, 0) != p || !WIFEXITED(st)) die("waitpid");
    int code = WEXITSTATUS(st);
    printf("parent_netlink=%d child_connected=%d child_kept_parents=%d\n", np, code != 100,
           code == 100 ? -1 : code);
    return 0;
}

static int firstfd(void) {
    int a = open("/dev/null", O_RDONLY);
    printf("first_fd=%d\n", a);
    int udp = udp_connect("127.0.0.2", 7);
    int b = open("/dev/null", O_RDONLY);
    printf("udp=%d next_fd=%d\n", udp, b);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(100);
    if (argc >= 2 && !strcmp(argv[1], "closefrom-tcp"))
        return closefrom_tcp(argc >= 3 && !strcmp(argv[2], "raw"));
    if (argc >= 3 && !strcmp(argv[1], "closefrom-log")) return closefrom_log(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "forkfds")) return forkfds(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 2 && !strcmp(argv[1], "firstfd")) return firstfd();
    if (argc >= 2 && !strcmp(argv[1], "netns")) return netns();
    if (argc >= 2 && !strcmp(argv[1], "rawfork")) return rawfork();
    fprintf(stderr, "usage: ownfds closefrom-tcp [raw] | closefrom-log FILE | forkfds T N | netns | rawfork | firstfd\n");
    return 2;
}
