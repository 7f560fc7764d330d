/* emfile: RLIMIT_NOFILE reached while the UDP lock must swap in a fresh socket.
 * Range of 10 ports; 9 sockets already connected to D, so a new connect to D whose random
 * first port is one of those 9 loses the race and needs a fresh socket (one more fd).
 *   emfile ATTEMPTS
 * Phase "zero": no fd is available at connect: each attempt succeeds (first pick was the free
 * port) or fails with EMFILE; the fd count is the same before and after; after EMFILE, once fds
 * are available again, a second connect on the same socket must succeed (as it would without
 * the library, where the failed connect leaves the socket usable).
 * Phase "one": exactly one spare fd: every connect succeeds. */
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

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int attempts = argc > 1 ? atoi(argv[1]) : 40;
    getrlimit(RLIMIT_NOFILE, &orig);
    memset(&D, 0, sizeof D);
    D.sin_family = AF_INET;
    D.sin_port = htons(7);
    inet_pton(AF_INET, "127.0.0.2", &D.sin_addr);
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
    int emfile = 0, success = 0, other = 0, leaks = 0, retry_ok = 0, echo_bad = 0;
    int base = count_fds(NULL);
    for (int a = 0; a < attempts; a++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        squeeze(0);
        int r = connect(s, (struct sockaddr *)&D, sizeof D);
        int e = errno;
        unsqueeze();
        if (count_fds(NULL) != base + 1) {
            leaks++;
            printf("leak attempt=%d fds=%d expected=%d r=%d errno=%d\n", a, count_fds(NULL), base + 1, r, e);
        }
        if (r == 0) {
            success++;
            if (!echo_ok(s)) echo_bad++;
        } else if (e == EMFILE) {
            emfile++;
            int r2 = connect(s, (struct sockaddr *)&D, sizeof D);
            if (r2 == 0 && echo_ok(s)) retry_ok++;
            else printf("retry_after_emfile attempt=%d r=%d errno=%d\n", a, r2, errno);
        } else {
            other++;
            printf("unexpected attempt=%d errno=%d\n", a, e);
        }
        close(s);
        if (count_fds(NULL) != base) {
            leaks++;
            printf("leak_after_close attempt=%d fds=%d base=%d\n", a, count_fds(NULL), base);
        }
    }
    int one_ok = 0;
    for (int a = 0; a < attempts; a++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        squeeze(1);
        int r = connect(s, (struct sockaddr *)&D, sizeof D);
        int e = errno;
        unsqueeze();
        if (r == 0 && echo_ok(s)) one_ok++;
        else printf("one_spare attempt=%d r=%d errno=%d\n", a, r, e);
        close(s);
        if (count_fds(NULL) != base) {
            leaks++;
            printf("leak_one_spare attempt=%d fds=%d base=%d\n", a, count_fds(NULL), base);
        }
    }
    int held_ok = 0;
    for (int i = 0; i < 9; i++) held_ok += echo_ok(held[i]);
    printf("attempts=%d emfile=%d success=%d other=%d leaks=%d retry_ok=%d echo_bad=%d one_spare_ok=%d held_ok=%d\n",
           attempts, emfile, success, other, leaks, retry_ok, echo_bad, one_ok, held_ok);
    return 0;
}
