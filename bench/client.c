/* connectx benchmark helper: the timed loops, in C so interpreter overhead does not hide the
 * library's cost. Driven by bench/run.py, which runs each mode inside a fresh network namespace.
 *
 *   client cost   RECIPE SRC N WARM DSTIP DPORT        mean and median ns per socket+[bind]+connect+close
 *                                                       and inside connect()
 *   client cap    RECIPE SRC FIXPORT MAXPERDST DPORT DSTIP...   concurrent connections reached
 *   client fill   N DSTIP DPORT [SECONDS]              UDP connects to one destination, one line each
 *   client serve  ACCEPT SECONDS DPORT IP...           TCP listeners (backlog 4096); ACCEPT=1 accepts+closes
 *   client hold   N SRC PORTBASE NPORTS DSTIP DPORTBASE SECONDS   hold N connected UDP sockets
 *                                                       (HOLD_PLAIN=1: plain ones, not shareable)
 *   client eagain SECONDS DSTIP DPORT                  UDP connects that fail (EAGAIN): ns each
 *   client rss    N DSTIP DPORT                        VmRSS before/after N connected UDP sockets
 *   client spawn  N LIB PROG [ARGS...]                 alternating runs of PROG without/with LD_PRELOAD=LIB
 *   client noop                                        does nothing
 *
 * RECIPE: tcp_plain tcp_bind tcp_bind_noport tcp_fixed tcp_fixed_reuse udp_plain udp_bind
 * Every loop is bounded; servers and holders stop by themselves after SECONDS or on stdin EOF.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
    exit(2);
}

static struct sockaddr_in sin_of(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "client: bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static void wait_stdin(int seconds);

enum { TCP_PLAIN, TCP_BIND, TCP_BIND_NOPORT, TCP_FIXED, TCP_FIXED_REUSE, UDP_PLAIN, UDP_BIND };

static int recipe_of(const char *s) {
    if (!strcmp(s, "tcp_plain")) return TCP_PLAIN;
    if (!strcmp(s, "tcp_bind")) return TCP_BIND;
    if (!strcmp(s, "tcp_bind_noport")) return TCP_BIND_NOPORT;
    if (!strcmp(s, "tcp_fixed")) return TCP_FIXED;
    if (!strcmp(s, "tcp_fixed_reuse")) return TCP_FIXED_REUSE;
    if (!strcmp(s, "udp_plain")) return UDP_PLAIN;
    if (!strcmp(s, "udp_bind")) return UDP_BIND;
    fprintf(stderr, "client: unknown recipe %s\n", s);
    exit(2);
}

/* Time spent inside connect(), summed over open_one calls. */
static uint64_t connect_ns;

/* One connection by the recipe. Returns the fd, or -1 with *stage = "socket"/"bind"/"connect"
 * and errno set. */
static int open_one(int recipe, const struct sockaddr_in *src, const struct sockaddr_in *dst,
                    const char **stage) {
    int tcp = recipe <= TCP_FIXED_REUSE;
    *stage = "socket";
    int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0) return -1;
    if (recipe == TCP_FIXED_REUSE) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (recipe == TCP_BIND_NOPORT) { /* what curl does itself: IP_BIND_ADDRESS_NO_PORT */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, 24, &one, sizeof one);
    }
    if (recipe == TCP_BIND || recipe == TCP_BIND_NOPORT || recipe == TCP_FIXED ||
        recipe == TCP_FIXED_REUSE || recipe == UDP_BIND) {
        *stage = "bind";
        if (bind(fd, (const struct sockaddr *)src, sizeof *src) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    *stage = "connect";
    uint64_t t0 = now_ns();
    int rc = connect(fd, (const struct sockaddr *)dst, sizeof *dst);
    connect_ns += now_ns() - t0;
    if (rc < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* CPU time (user + system) of this thread so far. */
static uint64_t cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* cost RECIPE SRC N WARM DSTIP DPORT */
static int cmd_cost(int argc, char **argv) {
    if (argc != 6) return 2;
    int recipe = recipe_of(argv[0]);
    struct sockaddr_in src = sin_of(argv[1], 0);
    long n = atol(argv[2]), warm = atol(argv[3]);
    struct sockaddr_in dst = sin_of(argv[4], atoi(argv[5]));
    const char *stage;
    for (long i = 0; i < warm; i++) {
        int fd = open_one(recipe, &src, &dst, &stage);
        if (fd < 0) die(stage);
        close(fd);
    }
    uint64_t *it = malloc(sizeof(uint64_t) * (size_t)n), *ic = malloc(sizeof(uint64_t) * (size_t)n);
    if (!it || !ic) die("malloc");
    uint64_t cpu0 = cpu_ns();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t a = now_ns(), c0 = connect_ns;
        int fd = open_one(recipe, &src, &dst, &stage);
        if (fd < 0) die(stage);
        close(fd);
        it[i] = now_ns() - a;
        ic[i] = connect_ns - c0;
    }
    uint64_t t1 = now_ns();
    uint64_t cpu1 = cpu_ns();
    uint64_t csum = 0;
    for (long i = 0; i < n; i++) csum += ic[i];
    qsort(it, (size_t)n, sizeof *it, cmp_u64);
    qsort(ic, (size_t)n, sizeof *ic, cmp_u64);
    /* mean ns per connection (socket+[bind]+connect+close), mean ns inside connect(), the
     * medians of the per-connection times (robust to preemption on a noisy machine), and the
     * client's CPU time (user+system) per connection */
    printf("%.1f %.1f %llu %llu %.1f\n", (double)(t1 - t0) / (double)n, (double)csum / (double)n,
           (unsigned long long)it[n / 2], (unsigned long long)ic[n / 2],
           (double)(cpu1 - cpu0) / (double)n);
    return 0;
}

/* eagain SECONDS DSTIP DPORT: socket + connect + close, over and over for SECONDS, where every
 * connect must fail with EAGAIN (the range is full of sockets that may not be shared). Prints the
 * process's first connect's ns (with the library's one-time set-up), the first connect a second
 * later (a search again, set-up done), then over the later ones (inside connect()) the median,
 * the 99th percentile and the maximum, and their count. */
static int cmd_eagain(int argc, char **argv) {
    if (argc != 3) return 2;
    double seconds = atof(argv[0]);
    struct sockaddr_in dst = sin_of(argv[1], atoi(argv[2]));
    size_t cap = 1 << 20, n = 0;
    uint64_t *ic = malloc(sizeof(uint64_t) * cap);
    if (!ic) die("malloc");
    uint64_t first = 0, again = 0, start = now_ns();
    for (long i = 0; n < cap && (i < 4 || now_ns() - start < (uint64_t)(seconds * 1e9)); i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0) die("socket");
        uint64_t t0 = now_ns();
        int rc = connect(fd, (const struct sockaddr *)&dst, sizeof dst);
        uint64_t t = now_ns() - t0;
        if (rc == 0 || errno != EAGAIN) {
            fprintf(stderr, "connect: expected EAGAIN, got %s\n", rc == 0 ? "success" : strerror(errno));
            return 1;
        }
        close(fd);
        if (i == 0) {
            first = t;
            /* the library's memories last a second: the next connect searches again, with
             * the process's one-time set-up behind it */
            usleep(1100000);
            start = now_ns();
        } else if (i == 1) {
            again = t;
        } else {
            ic[n++] = t;
        }
    }
    qsort(ic, n, sizeof *ic, cmp_u64);
    printf("%llu %llu %llu %llu %llu %zu\n", (unsigned long long)first, (unsigned long long)again,
           (unsigned long long)ic[n / 2],
           (unsigned long long)ic[n * 99 / 100], (unsigned long long)ic[n - 1], n);
    return 0;
}

/* cap RECIPE SRC FIXPORT MAXPERDST DPORT DSTIP... */
static int cmd_cap(int argc, char **argv) {
    if (argc < 6) return 2;
    raise_nofile();
    int recipe = recipe_of(argv[0]);
    struct sockaddr_in src = sin_of(argv[1], 0);
    int fixport = atoi(argv[2]);
    long maxper = atol(argv[3]);
    int dport = atoi(argv[4]);
    int fixed = recipe == TCP_FIXED || recipe == TCP_FIXED_REUSE;
    if (fixed) {
        src.sin_port = htons((uint16_t)fixport);
        maxper = 1;
    }
    long total = 0;
    int first_errno = 0;
    const char *first_stage = "-";
    char perdst[4096] = "";
    size_t off = 0;
    for (int d = 5; d < argc; d++) {
        struct sockaddr_in dst = sin_of(argv[d], dport);
        long got = 0;
        for (long i = 0; i < maxper; i++) {
            const char *stage;
            int fd = open_one(recipe, &src, &dst, &stage);
            if (fd < 0) {
                if (!first_errno) {
                    first_errno = errno;
                    first_stage = stage;
                }
                break;
            }
            got++;
        }
        total += got;
        off += (size_t)snprintf(perdst + off, sizeof perdst - off, "%s%ld", d > 5 ? "," : "", got);
        if (off >= sizeof perdst) off = sizeof perdst - 1;
    }
    /* Check UDP 4-tuples are unique: no two connected sockets on one (local, remote). */
    printf("total=%ld first_fail=%s:%s perdst=%s\n", total, first_stage,
           first_errno ? strerrorname_np(first_errno) : "none", perdst);
    fflush(stdout);
    wait_stdin(120); /* the connections stay open while run.py inspects them with ss */
    return 0;
}

/* fill N DSTIP DPORT [HOLD_SECONDS]: UDP connects to one destination; each line "i ns rc errno".
 * Sockets stay open; with HOLD_SECONDS, prints "ready" and holds them until stdin closes. */
static int cmd_fill(int argc, char **argv) {
    if (argc != 3 && argc != 4) return 2;
    raise_nofile();
    long n = atol(argv[0]);
    struct sockaddr_in dst = sin_of(argv[1], atoi(argv[2]));
    for (long i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0) die("socket");
        uint64_t t0 = now_ns();
        int rc = connect(fd, (const struct sockaddr *)&dst, sizeof dst);
        uint64_t t1 = now_ns();
        int e = rc < 0 ? errno : 0;
        printf("%ld %llu %d %s\n", i, (unsigned long long)(t1 - t0), rc,
               e ? strerrorname_np(e) : "0");
        if (rc < 0) close(fd);
    }
    if (argc == 4) {
        printf("ready\n");
        fflush(stdout);
        wait_stdin(atoi(argv[3]));
    }
    return 0;
}

/* Waits until stdin reaches EOF or `seconds` pass. */
static void wait_stdin(int seconds) {
    struct pollfd p = {.fd = 0, .events = POLLIN};
    uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
    char buf[64];
    while (now_ns() < end) {
        int r = poll(&p, 1, 200);
        if (r > 0) {
            ssize_t k = read(0, buf, sizeof buf);
            if (k <= 0) return;
        }
    }
}

/* serve ACCEPT SECONDS DPORT IP... */
static int cmd_serve(int argc, char **argv) {
    if (argc < 4) return 2;
    raise_nofile();
    int do_accept = atoi(argv[0]);
    int seconds = atoi(argv[1]);
    int dport = atoi(argv[2]);
    int n = argc - 3;
    struct pollfd *p = calloc((size_t)n + 1, sizeof *p);
    for (int i = 0; i < n; i++) {
        struct sockaddr_in a = sin_of(argv[3 + i], dport);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("serve bind");
        if (listen(fd, 4096) < 0) die("listen");
        p[i].fd = fd;
        p[i].events = POLLIN;
    }
    p[n].fd = 0;
    p[n].events = POLLIN;
    printf("ready\n");
    fflush(stdout);
    uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
    while (now_ns() < end) {
        int r = poll(p, (nfds_t)n + 1, 200);
        if (r <= 0) continue;
        if (p[n].revents) {
            char buf[64];
            if (read(0, buf, sizeof buf) <= 0) break;
        }
        if (!do_accept) continue;
        for (int i = 0; i < n; i++) {
            if (!(p[i].revents & POLLIN)) continue;
            for (;;) {
                int c = accept4(p[i].fd, NULL, NULL, 0);
                if (c < 0) break;
                close(c);
            }
        }
    }
    return 0;
}

/* hold N SRC PORTBASE NPORTS DSTIP DPORTBASE SECONDS: socket i gets SO_REUSEPORT and, once
 * connected, IP_BIND_ADDRESS_NO_PORT (the state a connectx-connected socket has: the lock's
 * switch and connectx's mark, src/udp/consent.rs), binds SRC:(PORTBASE + i % NPORTS), connects
 * DSTIP:(DPORTBASE + i / NPORTS). With HOLD_PLAIN=1 neither: a program's own connected sockets,
 * which connectx may not share. Prints "ready N" and holds them. */
static int cmd_hold(int argc, char **argv) {
    if (argc != 7) return 2;
    raise_nofile();
    long n = atol(argv[0]);
    int portbase = atoi(argv[2]), nports = atoi(argv[3]), dportbase = atoi(argv[5]);
    int seconds = atoi(argv[6]);
    const char *plain_env = getenv("HOLD_PLAIN");
    int plain = plain_env && !strcmp(plain_env, "1");
    long ok = 0;
    for (long i = 0; i < n; i++) {
        struct sockaddr_in src = sin_of(argv[1], portbase + (int)(i % nports));
        struct sockaddr_in dst = sin_of(argv[4], dportbase + (int)(i / nports));
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0) die("hold socket");
        int one = 1;
        if (!plain) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("hold bind");
        if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) die("hold connect");
        if (!plain) setsockopt(fd, IPPROTO_IP, 24, &one, sizeof one);
        ok++;
    }
    printf("ready %ld\n", ok);
    fflush(stdout);
    wait_stdin(seconds);
    return 0;
}

static long field_kb(const char *path, const char *name) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, n)) kb = atol(line + n);
    fclose(f);
    return kb;
}

static long vmrss_kb(void) { return field_kb("/proc/self/status", "VmRSS:"); }

/* Memory only this process has: private dirty pages (anonymous memory, written data). */
static long private_dirty_kb(void) { return field_kb("/proc/self/smaps_rollup", "Private_Dirty:"); }

/* rss N DSTIP DPORT: VmRSS at start, after one connected UDP socket (closed), and with N open. */
static int cmd_rss(int argc, char **argv) {
    if (argc != 3) return 2;
    raise_nofile();
    long rss0 = vmrss_kb(), pd0 = private_dirty_kb();
    long n = atol(argv[0]);
    struct sockaddr_in dst = sin_of(argv[1], atoi(argv[2]));
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) die("rss connect");
    close(fd);
    long rss1 = vmrss_kb(), pd1 = private_dirty_kb();
    long ok = 0;
    for (long i = 0; i < n; i++) {
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0) die("rss socket");
        if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0) ok++;
    }
    long rss2 = vmrss_kb(), pd2 = private_dirty_kb();
    printf("start=%ld first=%ld after=%ld pd_start=%ld pd_first=%ld pd_after=%ld n=%ld\n", rss0, rss1,
           rss2, pd0, pd1, pd2, ok);
    return 0;
}

/* spawn N LIB PROG [ARGS...]: N rounds of (without, with) in alternating order; prints
 * "without_ns with_ns" per round. */
static int cmd_spawn(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[0]);
    const char *lib = argv[1];
    char **args = argv + 2;
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **env_without = calloc(ne + 2, sizeof(char *));
    char **env_with = calloc(ne + 2, sizeof(char *));
    size_t a = 0, b = 0;
    for (size_t i = 0; i < ne; i++) {
        if (!strncmp(environ[i], "LD_PRELOAD=", 11)) continue;
        env_without[a++] = environ[i];
        env_with[b++] = environ[i];
    }
    char *pre = malloc(strlen(lib) + 16);
    sprintf(pre, "LD_PRELOAD=%s", lib);
    env_with[b++] = pre;
    int devnull = open("/dev/null", O_WRONLY);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, devnull, 1);
    for (long i = 0; i < n; i++) {
        uint64_t t[2];
        for (int k = 0; k < 2; k++) {
            int with = (i % 2) ? !k : k;
            pid_t pid;
            uint64_t t0 = now_ns();
            if (posix_spawn(&pid, args[0], &fa, NULL, args, with ? env_with : env_without))
                die("posix_spawn");
            int st;
            waitpid(pid, &st, 0);
            t[with] = now_ns() - t0;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "client: %s failed (status %d)\n", args[0], st);
                return 1;
            }
        }
        printf("%llu %llu\n", (unsigned long long)t[0], (unsigned long long)t[1]);
    }
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) goto usage;
    const char *m = argv[1];
    int r = 2;
    if (!strcmp(m, "cost")) r = cmd_cost(argc - 2, argv + 2);
    else if (!strcmp(m, "cap")) r = cmd_cap(argc - 2, argv + 2);
    else if (!strcmp(m, "fill")) r = cmd_fill(argc - 2, argv + 2);
    else if (!strcmp(m, "serve")) r = cmd_serve(argc - 2, argv + 2);
    else if (!strcmp(m, "hold")) r = cmd_hold(argc - 2, argv + 2);
    else if (!strcmp(m, "eagain")) r = cmd_eagain(argc - 2, argv + 2);
    else if (!strcmp(m, "rss")) r = cmd_rss(argc - 2, argv + 2);
    else if (!strcmp(m, "spawn")) r = cmd_spawn(argc - 2, argv + 2);
    else if (!strcmp(m, "noop")) r = 0;
    if (r != 2) return r;
usage:
    fprintf(stderr, "usage: see the comment at the top of bench/client.c\n");
    return 2;
}
