/* control: control flow leaving or re-entering a hook (issue 16). Run in a fresh network
 * namespace (nsrun), with or without the library; prints key=value lines, exits 0 when the run
 * completed (the test judges the values), 2 on a setup error. A crash (SIGABRT: "FATAL:
 * exception not rethrown") is the failure the cancel modes look for.
 *   control cancel CALL    a thread blocked in CALL (or, for the *-pending ones, with a cancel
 *                          already pending when it makes CALL) is cancelled: prints
 *                          cancelled=1 (pthread_join got PTHREAD_CANCELED), cleanup=1 (its
 *                          cleanup handler ran), returned=0 (CALL did not return first).
 *                          CALL: tcp-deferred (bind(ip, 0) + connect), tcp-fixed (bind(ip, P) +
 *                          connect), tcp-plain (connect), fastopen-sendto, fastopen-sendmsg
 *                          (bind(ip, 0) + MSG_FASTOPEN), udp-connect-pending,
 *                          udp-sendto-pending, udp-recv.
 *   control exit-in-handler   a thread blocked in a bind(ip, 0) + connect gets SIGUSR1, whose
 *                          handler calls pthread_exit: exited=1, cleanup=1.
 *   control longjmp        4 UDP sockets hold every port of the range (40000-40003) towards
 *                          127.0.0.2:7 and a fifth shares one of them towards 127.0.0.3:7; a
 *                          blocking bind(ip, 0) + TCP connect is left by siglongjmp from a
 *                          SIGALRM handler; then the fifth is reconnected to 127.0.0.2:7 (every
 *                          4-tuple taken): reconnect_ret, reconnect_errno, duplicates (4-tuples
 *                          held by two sockets), plus jumped=1.
 *   control handler        the same, but the SIGALRM handler makes the reconnect itself while
 *                          its thread is inside the blocking connect's hook, and returns.
 *   control jumpstorm      a 200 us timer's SIGALRM handler siglongjmps out of whatever the
 *                          thread is in while it keeps connecting sockets whose range is full
 *                          (UDP lock searches: connectx's own work, most of the time) for 1 s;
 *                          then, from a deeper call chain: cancel_enabled (the thread's
 *                          cancellation state is the program's, enabled), then a socket that
 *                          was being connected at the last jump reconnects to a free
 *                          destination: after_ret, after_errno, after_ms; jumps.
 *   control handlerstorm   the 4-port range full towards 127.0.0.2:7, 32 sockets sharing its
 *                          ports towards 8 other destinations; a 1 ms timer's SIGALRM handler
 *                          reconnects the next of them to 127.0.0.2:7 (every 4-tuple taken)
 *                          while the thread keeps making UDP connects (its hooks, interrupted):
 *                          handler_calls, handler_ok (connects that went through: each one a
 *                          duplicate 4-tuple), duplicates.
 *   control forkbusy N     a thread keeps connecting socket s (its range full: every connect
 *                          is a UDP lock search); N times the main thread forks; each child
 *                          connects s to a free destination at once: children, ok_children
 *                          (connected within 500 ms), slowest_ms.
 *   control forkfds T F    T threads make UDP connects, reconnects and fixed-port binds in a
 *                          4-port range while 2 threads fork F children each; each child counts
 *                          the netlink sockets it holds (the program makes none):
 *                          children, leaky_children, leaked_fds, ops. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "inet.h"

static void die(const char *what) {
    printf("setup_error=%s errno=%d\n", what, errno);
    fflush(stdout);
    exit(2);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A TCP destination that never answers: a listener whose accept queue is full (listen(l, 0)
 * and one connection not accepted), so the next SYN is dropped and connect blocks. */
static struct sockaddr_in blackhole;

static void make_blackhole(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    blackhole = sin4("127.0.0.1", 0);
    socklen_t len = sizeof blackhole;
    if (l < 0 || bind(l, (struct sockaddr *)&blackhole, sizeof blackhole) || listen(l, 0) ||
        getsockname(l, (struct sockaddr *)&blackhole, &len))
        die("listener");
    int f = socket(AF_INET, SOCK_STREAM, 0);
    if (f < 0 || connect(f, (struct sockaddr *)&blackhole, sizeof blackhole)) die("filler");
    /* The accept queue holds one: a second filler makes sure the next SYN finds it full. */
    int g = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (g < 0) die("filler 2");
    connect(g, (struct sockaddr *)&blackhole, sizeof blackhole);
}

/* ---- cancel ---- */

static atomic_int cleanup_ran, call_returned, ready, cancel_sent;
static const char *call_name;

static void cleanup(void *arg) {
    (void)arg;
    atomic_store(&cleanup_ran, 1);
}

static void *canceller_target(void *arg) {
    (void)arg;
    int pending = strstr(call_name, "pending") != NULL;
    int old;
    pthread_cleanup_push(cleanup, NULL);
    if (pending) pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    int s;
    struct sockaddr_in any = sin4("127.0.0.1", 0), fixed = sin4("127.0.0.1", 41000);
    int udp = !strncmp(call_name, "udp", 3);
    s = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    if (s < 0) die("socket");
    if (!strcmp(call_name, "tcp-fixed")) {
        if (bind(s, (struct sockaddr *)&fixed, sizeof fixed)) die("bind fixed");
    } else if (strcmp(call_name, "tcp-plain") && strcmp(call_name, "udp-connect-pending")) {
        if (bind(s, (struct sockaddr *)&any, sizeof any)) die("bind");
    }
    struct sockaddr_in peer = sin4("127.0.0.2", 7);
    atomic_store(&ready, 1);
    if (pending) {
        while (!atomic_load(&cancel_sent)) usleep(1000);
        /* Enabling does not act on the pending cancel: the next cancellation point does. */
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    }
    if (!strncmp(call_name, "tcp", 3)) {
        connect(s, (struct sockaddr *)&blackhole, sizeof blackhole);
    } else if (!strcmp(call_name, "fastopen-sendto")) {
        sendto(s, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&blackhole, sizeof blackhole);
    } else if (!strcmp(call_name, "fastopen-sendmsg")) {
        struct iovec v = {"x", 1};
        struct msghdr m = {0};
        m.msg_name = &blackhole;
        m.msg_namelen = sizeof blackhole;
        m.msg_iov = &v;
        m.msg_iovlen = 1;
        sendmsg(s, &m, MSG_FASTOPEN);
    } else if (!strcmp(call_name, "udp-connect-pending")) {
        connect(s, (struct sockaddr *)&peer, sizeof peer);
    } else if (!strcmp(call_name, "udp-sendto-pending")) {
        sendto(s, "x", 1, 0, (struct sockaddr *)&peer, sizeof peer);
    } else if (!strcmp(call_name, "udp-recv")) {
        char b[8];
        recv(s, b, sizeof b, 0);
    } else {
        die("unknown call");
    }
    atomic_store(&call_returned, 1);
    pthread_testcancel();
    pthread_cleanup_pop(0);
    return NULL;
}

static int cancel_mode(const char *call) {
    call_name = call;
    make_blackhole();
    pthread_t t;
    if (pthread_create(&t, NULL, canceller_target, NULL)) die("pthread_create");
    while (!atomic_load(&ready)) usleep(1000);
    if (!strstr(call, "pending")) usleep(300000); /* blocked in the call by now */
    int blocked = !atomic_load(&call_returned);
    pthread_cancel(t);
    atomic_store(&cancel_sent, 1);
    void *res;
    pthread_join(t, &res);
    printf("call=%s blocked=%d cancelled=%d cleanup=%d returned=%d\n", call, blocked,
           res == PTHREAD_CANCELED, atomic_load(&cleanup_ran), atomic_load(&call_returned));
    return 0;
}

/* ---- pthread_exit from a signal handler ---- */

static void exit_handler(int sig) {
    (void)sig;
    pthread_exit((void *)7);
}

static void *exit_target(void *arg) {
    (void)arg;
    pthread_cleanup_push(cleanup, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = sin4("127.0.0.1", 0);
    if (s < 0 || bind(s, (struct sockaddr *)&any, sizeof any)) die("bind");
    atomic_store(&ready, 1);
    connect(s, (struct sockaddr *)&blackhole, sizeof blackhole);
    atomic_store(&call_returned, 1);
    pthread_cleanup_pop(0);
    return NULL;
}

static int exit_in_handler(void) {
    make_blackhole();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_handler;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, exit_target, NULL)) die("pthread_create");
    while (!atomic_load(&ready)) usleep(1000);
    usleep(300000);
    int blocked = !atomic_load(&call_returned);
    pthread_kill(t, SIGUSR1);
    void *res;
    pthread_join(t, &res);
    printf("blocked=%d exited=%d cleanup=%d returned=%d\n", blocked, res == (void *)7,
           atomic_load(&cleanup_ran), atomic_load(&call_returned));
    return 0;
}

/* ---- longjmp and a handler's connect ---- */

#define HOLDERS 4
static int holder[HOLDERS], sharer;
static sigjmp_buf jump;
static int handler_connects;
static volatile sig_atomic_t handler_ret = 99, handler_errno;

static void alarm_handler(int sig) {
    (void)sig;
    if (handler_connects) {
        struct sockaddr_in a = sin4("127.0.0.2", 7);
        int e = errno;
        handler_ret = connect(sharer, (struct sockaddr *)&a, sizeof a);
        handler_errno = handler_ret < 0 ? errno : 0;
        errno = e;
        return;
    }
    siglongjmp(jump, 1);
}

static int same_tuple(int a, int b) {
    struct sockaddr_in la, lb, pa, pb;
    socklen_t l = sizeof la;
    if (getsockname(a, (struct sockaddr *)&la, &l)) return 0;
    l = sizeof lb;
    if (getsockname(b, (struct sockaddr *)&lb, &l)) return 0;
    l = sizeof pa;
    if (getpeername(a, (struct sockaddr *)&pa, &l)) return 0;
    l = sizeof pb;
    if (getpeername(b, (struct sockaddr *)&pb, &l)) return 0;
    return la.sin_port == lb.sin_port && la.sin_addr.s_addr == lb.sin_addr.s_addr &&
           pa.sin_port == pb.sin_port && pa.sin_addr.s_addr == pb.sin_addr.s_addr;
}

static int jump_mode(int in_handler) {
    make_blackhole();
    struct sockaddr_in held = sin4("127.0.0.2", 7), other = sin4("127.0.0.3", 7);
    for (int i = 0; i < HOLDERS; i++) {
        holder[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (holder[i] < 0 || connect(holder[i], (struct sockaddr *)&held, sizeof held))
            die("holder connect");
    }
    sharer = socket(AF_INET, SOCK_DGRAM, 0);
    int shared_ok = sharer >= 0 && connect(sharer, (struct sockaddr *)&other, sizeof other) == 0;
    printf("sharer_connected=%d\n", shared_ok);
    if (!shared_ok) die("sharer connect (the range is full without the library)");
    handler_connects = in_handler;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alarm_handler; /* no SA_RESTART: a returning handler gives EINTR */
    sigaction(SIGALRM, &sa, NULL);
    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = sin4("127.0.0.1", 0);
    if (t < 0 || bind(t, (struct sockaddr *)&any, sizeof any)) die("tcp bind");
    int jumped = 0, tcp_ret = 0, tcp_errno = 0;
    if (sigsetjmp(jump, 1) == 0) {
        alarm(1);
        tcp_ret = connect(t, (struct sockaddr *)&blackhole, sizeof blackhole);
        tcp_errno = tcp_ret < 0 ? errno : 0;
    } else {
        jumped = 1;
    }
    alarm(0);
    int ret, e;
    if (in_handler) {
        ret = handler_ret;
        e = handler_errno;
    } else {
        ret = connect(sharer, (struct sockaddr *)&held, sizeof held);
        e = ret < 0 ? errno : 0;
    }
    int dup = 0;
    for (int i = 0; i < HOLDERS; i++) {
        dup += same_tuple(holder[i], sharer);
        for (int j = i + 1; j < HOLDERS; j++) dup += same_tuple(holder[i], holder[j]);
    }
    /* The thread's later calls still get the policy: one more reconnect onto a taken 4-tuple. */
    int later = connect(sharer, (struct sockaddr *)&held, sizeof held);
    int later_e = later < 0 ? errno : 0;
    for (int i = 0; i < HOLDERS; i++) dup += same_tuple(holder[i], sharer);
    printf("jumped=%d tcp_ret=%d tcp_errno=%d reconnect_ret=%d reconnect_errno=%d later_ret=%d "
           "later_errno=%d duplicates=%d\n",
           jumped, tcp_ret, tcp_errno, ret, e, later, later_e, dup);
    return 0;
}

/* ---- jumps out of connectx's own work ---- */

static sigjmp_buf storm_jump;
static volatile sig_atomic_t storming;

static void storm_handler(int sig) {
    (void)sig;
    if (storming) siglongjmp(storm_jump, 1);
}

/* Deeper than any frame the jumps left, with stack used on the way (a stale mark would then
 * lie above the caller). */
static int __attribute__((noinline)) deep(int n, int s, struct sockaddr_in *dst, int *cancel) {
    volatile char pad[512];
    pad[0] = (char)n;
    if (n > 0) return deep(n - 1, s, dst, cancel) + pad[0] - (char)n;
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    *cancel = old == PTHREAD_CANCEL_ENABLE;
    return connect(s, (struct sockaddr *)dst, sizeof *dst);
}

static int jumpstorm(void) {
    struct sockaddr_in full = sin4("127.0.0.2", 7), free_dst = sin4("127.0.0.3", 7);
    for (int i = 0; i < HOLDERS; i++) {
        int h = socket(AF_INET, SOCK_DGRAM, 0);
        if (h < 0 || connect(h, (struct sockaddr *)&full, sizeof full)) die("holder connect");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = storm_handler;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    static volatile int s = -1;
    volatile long jumps = 0, connects = 0;
    long end = now_ms() + 1000;
    setitimer(ITIMER_REAL, &it, NULL);
    while (now_ms() < end) {
        if (sigsetjmp(storm_jump, 1)) {
            storming = 0;
            jumps++;
            continue;
        }
        if (s < 0) s = socket(AF_INET, SOCK_DGRAM, 0);
        storming = 1;
        connect(s, (struct sockaddr *)&full, sizeof full);
        storming = 0;
        connects++;
        if (connects % 16 == 0) {
            close(s);
            s = -1;
        }
    }
    storming = 0;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    if (s < 0) s = socket(AF_INET, SOCK_DGRAM, 0);
    int cancel = 0;
    long t0 = now_ms();
    int r = deep(40, s, &free_dst, &cancel);
    int e = r < 0 ? errno : 0;
    printf("jumps=%ld connects=%ld cancel_enabled=%d after_ret=%d after_errno=%d after_ms=%ld\n",
           jumps, connects, cancel, r, e, now_ms() - t0);
    return 0;
}

/* ---- a signal handler's connects while its thread is inside hooks ---- */

#define SHARERS 32
static int sharers[SHARERS];
static volatile sig_atomic_t hs_calls, hs_ok;

/* Each call reconnects the next sharer onto a taken 4-tuple (once each). */
static void hs_handler(int sig) {
    (void)sig;
    if (hs_calls >= SHARERS) return;
    int e = errno;
    struct sockaddr_in a = sin4("127.0.0.2", 7);
    if (connect(sharers[hs_calls], (struct sockaddr *)&a, sizeof a) == 0) hs_ok++;
    hs_calls++;
    errno = e;
}

static int handlerstorm(void) {
    struct sockaddr_in held = sin4("127.0.0.2", 7), busy = sin4("127.0.0.4", 7);
    for (int i = 0; i < HOLDERS; i++) {
        holder[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (holder[i] < 0 || connect(holder[i], (struct sockaddr *)&held, sizeof held))
            die("holder connect");
    }
    /* 32 sockets sharing the full range's ports, 4 per destination 127.0.0.10-17:7. */
    for (int i = 0; i < SHARERS; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "127.0.0.%d", 10 + i / HOLDERS);
        struct sockaddr_in o = sin4(ip, 7);
        sharers[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (sharers[i] < 0 || connect(sharers[i], (struct sockaddr *)&o, sizeof o))
            die("sharer connect (the range is full without the library)");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = hs_handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    long end = now_ms() + 3000, connects = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    while (now_ms() < end && hs_calls < SHARERS) {
        int x = socket(AF_INET, SOCK_DGRAM, 0);
        int one = 1;
        setsockopt(x, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        connect(x, (struct sockaddr *)&busy, sizeof busy);
        connects++;
        close(x);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    int dup = 0;
    for (int i = 0; i < HOLDERS; i++)
        for (int j = 0; j < SHARERS; j++) dup += same_tuple(holder[i], sharers[j]);
    printf("handler_calls=%d handler_ok=%d duplicates=%d connects=%ld\n", (int)hs_calls,
           (int)hs_ok, dup, connects);
    return 0;
}

/* ---- fork while another thread is inside a UDP connect of the same socket ---- */

static atomic_int stop;
static atomic_long ops;
static int busy_sock;

static void *busy_connector(void *arg) {
    (void)arg;
    struct sockaddr_in full = sin4("127.0.0.2", 7);
    while (!atomic_load(&stop)) {
        connect(busy_sock, (struct sockaddr *)&full, sizeof full);
        atomic_fetch_add(&ops, 1);
    }
    return NULL;
}

static int forkbusy(int n) {
    struct sockaddr_in full = sin4("127.0.0.2", 7), free_dst = sin4("127.0.0.4", 7);
    /* Every port of the range is held towards 127.0.0.2:7. */
    for (int i = 0; i < HOLDERS; i++) {
        int h = socket(AF_INET, SOCK_DGRAM, 0);
        if (h < 0 || connect(h, (struct sockaddr *)&full, sizeof full)) die("holder connect");
    }
    int ok = 0, done = 0;
    long slowest = 0;
    for (int i = 0; i < n; i++) {
        busy_sock = socket(AF_INET, SOCK_DGRAM, 0);
        if (busy_sock < 0) die("socket");
        atomic_store(&stop, 0);
        atomic_store(&ops, 0);
        pthread_t t;
        if (pthread_create(&t, NULL, busy_connector, NULL)) die("pthread_create");
        while (atomic_load(&ops) < 3) usleep(500);
        pid_t p = fork();
        if (p < 0) die("fork");
        if (p == 0) {
            /* Let the parent's thread finish its connect of the shared socket first. */
            usleep(100000);
            long t0 = now_ms();
            int r = connect(busy_sock, (struct sockaddr *)&free_dst, sizeof free_dst);
            long took = now_ms() - t0;
            if (r) printf("child_errno=%d\n", errno);
            _exit(r == 0 ? (took < 500 ? 0 : 3) : (took < 500 ? 1 : 2));
        }
        atomic_store(&stop, 1);
        pthread_join(t, NULL);
        long t0 = now_ms();
        int st;
        if (waitpid(p, &st, 0) != p || !WIFEXITED(st)) die("waitpid");
        long took = now_ms() - t0;
        if (took > slowest) slowest = took;
        done++;
        ok += WEXITSTATUS(st) == 0;
        printf("child=%d status=%d\n", i, WEXITSTATUS(st));
        close(busy_sock);
    }
    printf("children=%d ok_children=%d slowest_ms=%ld\n", done, ok, slowest);
    return 0;
}

/* ---- fork children and the library's temporary netlink sockets ---- */

/* In the child: the netlink sockets among its fds (async-signal-safe calls only). */
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

static void *mixed_worker(void *arg) {
    long id = (long)arg;
    unsigned seed = (unsigned)id * 7919u + 1;
    while (!atomic_load(&stop)) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (s < 0) continue;
        int kind = rand_r(&seed) % 3;
        char ip[32];
        snprintf(ip, sizeof ip, "127.0.0.%d", 2 + rand_r(&seed) % 6);
        struct sockaddr_in dst = sin4(ip, 7 + rand_r(&seed) % 3);
        if (kind == 2) {
            /* A fixed port of the (full) range: the kernel finds it in use. */
            int one = 1;
            setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            struct sockaddr_in a = sin4("127.0.0.1", 40000 + rand_r(&seed) % 4);
            bind(s, (struct sockaddr *)&a, sizeof a);
        }
        if (connect(s, (struct sockaddr *)&dst, sizeof dst) == 0 && kind == 1) {
            dst.sin_port = htons(100 + rand_r(&seed) % 50);
            connect(s, (struct sockaddr *)&dst, sizeof dst);
        }
        atomic_fetch_add(&ops, 1);
        close(s);
    }
    return NULL;
}

static atomic_int children, leaky, leaked;

static void *forker(void *arg) {
    long forks = (long)arg;
    for (long i = 0; i < forks; i++) {
        pid_t p = fork();
        if (p < 0) {
            usleep(1000);
            i--;
            continue;
        }
        if (p == 0) {
            int n = netlink_fds();
            _exit(n > 100 ? 100 : n);
        }
        int st;
        if (waitpid(p, &st, 0) != p || !WIFEXITED(st)) die("waitpid");
        atomic_fetch_add(&children, 1);
        if (WEXITSTATUS(st)) {
            atomic_fetch_add(&leaky, 1);
            atomic_fetch_add(&leaked, WEXITSTATUS(st));
        }
    }
    return NULL;
}

static int forkfds(int threads, long forks) {
    pthread_t w[64], f[2];
    if (threads > 64) threads = 64;
    for (long i = 0; i < threads; i++)
        if (pthread_create(&w[i], NULL, mixed_worker, (void *)i)) die("pthread_create");
    while (atomic_load(&ops) < threads) usleep(1000);
    for (int i = 0; i < 2; i++)
        if (pthread_create(&f[i], NULL, forker, (void *)forks)) die("pthread_create forker");
    for (int i = 0; i < 2; i++) pthread_join(f[i], NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(w[i], NULL);
    printf("children=%d leaky_children=%d leaked_fds=%d ops=%ld\n", atomic_load(&children),
           atomic_load(&leaky), atomic_load(&leaked), atomic_load(&ops));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) die("usage");
    const char *m = argv[1];
    if (!strcmp(m, "cancel") && argc > 2) return cancel_mode(argv[2]);
    if (!strcmp(m, "exit-in-handler")) return exit_in_handler();
    if (!strcmp(m, "longjmp")) return jump_mode(0);
    if (!strcmp(m, "handler")) return jump_mode(1);
    if (!strcmp(m, "jumpstorm")) return jumpstorm();
    if (!strcmp(m, "handlerstorm")) return handlerstorm();
    if (!strcmp(m, "forkbusy") && argc > 2) return forkbusy(atoi(argv[2]));
    if (!strcmp(m, "forkfds") && argc > 3) return forkfds(atoi(argv[2]), atol(argv[3]));
    die("usage");
    return 2;
}
