/* emfile: RLIMIT_NOFILE reached at a UDP connect.
 * Range of 10 ports; 9 sockets already connected to D, then connects to D with no spare fd.
 *   emfile ATTEMPTS
 * Phase "zero": no fd is available at connect: each attempt succeeds or fails with EMFILE; the
 * fd count is the same before and after; after EMFILE, once fds are available again, a second
 * connect on the same socket must succeed (as it would without the library).
 * Phase "one": exactly one spare fd: every connect succeeds.
 * Each attempt runs in a fresh process (fork + exec of this program, "attempt MODE SRVFD"), so
 * that nothing the library learnt in one attempt helps the next. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static int count_fds(int *maxfd) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) { printf("harness_error=opendir errno=%d\n", errno); exit(2); }
    int n = 0, mx = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == dirfd(d)) continue;
        n++;
        if (fd > mx) mx = fd;
    }
    closedir(d);
    if (maxfd) *maxfd = mx;
    return n;
}

static struct sockaddr_in D;
static int srv;
static struct rlimit orig;

static int echo_ok(int s) {
    if (send(s, "ping", 4, 0) != 4) return 0;
    char buf[8];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t r = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (r != 4) return 0;
    sendto(srv, buf, 4, 0, (struct sockaddr *)&from, fl);
    r = recv(s, buf, sizeof buf, 0);
    return r == 4 && memcmp(buf, "ping", 4) == 0;
}

/* Fills every hole below the highest fd and sets the soft limit so that `spare` fds remain. */
static int fillers[20000], nfill;
static void squeeze(int spare) {
    int mx;
    count_fds(&mx);
    nfill = 0;
    for (;;) {
        int f = open("/dev/null", O_RDONLY);
        if (f < 0) break;
        if (f > mx || nfill == 20000) { close(f); break; }
        fillers[nfill++] = f;
    }
    struct rlimit rl = orig;
    rl.rlim_cur = mx + 1 + spare;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) { printf("harness_error=setrlimit errno=%d cur=%ld max=%ld\n", errno, (long)rl.rlim_cur, (long)rl.rlim_max); exit(2); }
}
static void unsqueeze(void) {
    setrlimit(RLIMIT_NOFILE, &orig);
    for (int i = 0; i < nfill; i++) close(fillers[i]);
    nfill = 0;
}

/* One attempt in this (fresh) process: prints "r errno leaks retry_ok echo_ok". */
static int attempt(int spare) {
    struct timeval tv = {2, 0};
    /* Warm up: one connect elsewhere opens the library's netlink sockets (kept for the life of
     * the process), so the only fd the attempt below can need is the fresh socket of a swap. */
    struct sockaddr_in d2 = D;
    inet_pton(AF_INET, "127.0.0.3", &d2.sin_addr);
    int w = socket(AF_INET, SOCK_DGRAM, 0);
    connect(w, (struct sockaddr *)&d2, sizeof d2);
    close(w);
    int base = count_fds(NULL);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    squeeze(spare);
    int r = connect(s, (struct sockaddr *)&D, sizeof D);
    int e = errno;
    unsqueeze();
    int leaks = count_fds(NULL) != base + 1;
    int retry_ok = 0, echo = 0;
    if (r == 0)
        echo = echo_ok(s);
    else if (e == EMFILE) {
        int r2 = connect(s, (struct sockaddr *)&D, sizeof D);
        retry_ok = r2 == 0 && echo_ok(s);
    }
    close(s);
    leaks += count_fds(NULL) != base;
    printf("%d %d %d %d %d\n", r, r ? e : 0, leaks, retry_ok, echo);
    return 0;
}

/* Runs one attempt in a fresh process and reads its line. */
static void run_attempt(const char *self, int spare, int *r, int *e, int *leaks, int *retry_ok, int *echo) {
    int p[2];
    if (pipe(p) < 0) { printf("harness_error=pipe\n"); exit(2); }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        char sp[8], sf[8];
        snprintf(sp, sizeof sp, "%d", spare);
        snprintf(sf, sizeof sf, "%d", srv);
        execl("/proc/self/exe", self, "attempt", sp, sf, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char buf[128] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (n <= 0 || sscanf(buf, "%d %d %d %d %d", r, e, leaks, retry_ok, echo) != 5) {
        printf("harness_error=attempt output '%s'\n", buf);
        exit(2);
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    getrlimit(RLIMIT_NOFILE, &orig);
    memset(&D, 0, sizeof D);
    D.sin_family = AF_INET;
    D.sin_port = htons(7);
    inet_pton(AF_INET, "127.0.0.2", &D.sin_addr);
    if (argc > 3 && !strcmp(argv[1], "attempt")) {
        srv = atoi(argv[3]);
        return attempt(atoi(argv[2]));
    }
    int attempts = argc > 1 ? atoi(argv[1]) : 40;
    srv = socket(AF_INET, SOCK_DGRAM, 0);
    if (bind(srv, (struct sockaddr *)&D, sizeof D) < 0) { printf("harness_error=server\n"); return 2; }
    struct timeval tv = {2, 0};
    setsockopt(srv, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int held[9];
    for (int i = 0; i < 9; i++) {
        held[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (connect(held[i], (struct sockaddr *)&D, sizeof D) < 0) {
            printf("harness_error=fill connect %d errno=%d\n", i, errno);
            return 2;
        }
        setsockopt(held[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    int emfile = 0, success = 0, other = 0, leaks = 0, retry_ok = 0, echo_bad = 0, one_ok = 0;
    for (int a = 0; a < attempts; a++) {
        int r, e, lk, rok, echo;
        run_attempt(argv[0], 0, &r, &e, &lk, &rok, &echo);
        leaks += lk;
        if (r == 0) {
            success++;
            echo_bad += !echo;
        } else if (e == EMFILE) {
            emfile++;
            retry_ok += rok;
            if (!rok) printf("retry_after_emfile attempt=%d failed\n", a);
        } else {
            other++;
            printf("unexpected attempt=%d errno=%d\n", a, e);
        }
    }
    for (int a = 0; a < attempts; a++) {
        int r, e, lk, rok, echo;
        run_attempt(argv[0], 1, &r, &e, &lk, &rok, &echo);
        leaks += lk;
        if (r == 0 && echo) one_ok++;
        else printf("one_spare attempt=%d r=%d errno=%d\n", a, r, e);
    }
    int held_ok = 0;
    for (int i = 0; i < 9; i++) held_ok += echo_ok(held[i]);
    printf("attempts=%d emfile=%d success=%d other=%d leaks=%d retry_ok=%d echo_bad=%d one_spare_ok=%d held_ok=%d\n",
           attempts, emfile, success, other, leaks, retry_ok, echo_bad, one_ok, held_ok);
    return 0;
}
