/* soak: a long loop of connects under the library (TCP and UDP, bind-before-connect and plain,
 * over D destinations), in batches held open together; after each sampled batch reads
 * /proc/net/{tcp,udp} for duplicate 4-tuples, counts /proc/self/fd and reads VmRSS.
 *   soak TOTAL_CONNECTS BATCH DESTS SAMPLE_EVERY
 * Prints progress lines and a summary: connects= failures= duplicates= fd_start= fd_end=
 * rss_start_kb= rss_end_kb= rss_max_kb= seconds= */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}
static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char l[256];
    long v = -1;
    while (fgets(l, sizeof l, f))
        if (!strncmp(l, "VmRSS:", 6)) v = atol(l + 6);
    fclose(f);
    return v;
}
/* duplicate connected 4-tuples in /proc/net/<proto> (local and remote both set) */
static char (*keys)[80];
static int cmp(const void *a, const void *b) { return strcmp(a, b); }
static int dups(const char *path, int *rows) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char l[512];
    int n = 0, cap = 1 << 20;
    if (!keys) keys = malloc((size_t)cap * 80);
    fgets(l, sizeof l, f);
    while (fgets(l, sizeof l, f) && n < cap) {
        char loc[64], rem[64];
        if (sscanf(l, "%*d: %63s %63s", loc, rem) != 2) continue;
        if (!strcmp(rem + strlen(rem) - 4, "0000")) continue; /* not connected */
        snprintf(keys[n++], 80, "%.38s-%.38s", loc, rem);
    }
    fclose(f);
    qsort(keys, n, 80, cmp);
    int d = 0;
    for (int i = 1; i < n; i++) d += !strcmp(keys[i], keys[i - 1]);
    *rows = n;
    return d;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    long total = argc > 1 ? atol(argv[1]) : 20000;
    int batch = argc > 2 ? atoi(argv[2]) : 1000;
    int dests = argc > 3 ? atoi(argv[3]) : 20;
    int every = argc > 4 ? atoi(argv[4]) : 1;
    int *ls = calloc(dests, sizeof(int)), *held = calloc(batch, sizeof(int));
    struct sockaddr_in *dst = calloc(dests, sizeof *dst);
    for (int i = 0; i < dests; i++) {
        dst[i].sin_family = AF_INET;
        dst[i].sin_port = htons(80);
        dst[i].sin_addr.s_addr = htonl(0x7f000002 + i);
        ls[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (bind(ls[i], (struct sockaddr *)&dst[i], sizeof dst[i]) < 0 || listen(ls[i], 4096) < 0) {
            printf("harness_error=listener errno=%d\n", errno);
            return 2;
        }
    }
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long done = 0, fails = 0, dup_total = 0, rounds = 0, max_rows = 0;
    int fd_start = -1;
    long rss_start = -1, rss_max = 0;
    int lasterr = 0;
    while (done < total) {
        int k = 0;
        for (; k < batch && done < total; k++, done++) {
            int kind = done % 4; /* 0: TCP bind+connect, 1: UDP connect, 2: UDP bind+connect, 3: TCP connect */
            int tcp = kind == 0 || kind == 3;
            int s = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
            if (s < 0) { fails++; lasterr = errno; held[k] = -1; continue; }
            if (tcp) {
                struct linger lg = {1, 0}; /* RST on close: no TIME_WAIT piling up */
                setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            if ((kind == 0 || kind == 2) && bind(s, (struct sockaddr *)&src, sizeof src) < 0) {
                fails++, lasterr = errno;
                close(s);
                held[k] = -1;
                continue;
            }
            const struct sockaddr_in *d = &dst[(done / 4 + done) % dests];
            if (connect(s, (const struct sockaddr *)d, sizeof *d) < 0) {
                fails++, lasterr = errno;
                close(s);
                held[k] = -1;
                continue;
            }
            held[k] = s;
        }
        /* drain the accept queues (accepted sockets are closed at once) */
        for (int i = 0; i < dests; i++) {
            int a;
            while ((a = accept(ls[i], NULL, NULL)) >= 0) close(a);
        }
        if (rounds % every == 0) {
            int ru = 0, rt = 0;
            int du = dups("/proc/net/udp", &ru), dt = dups("/proc/net/tcp", &rt);
            dup_total += du + dt;
            if (ru + rt > max_rows) max_rows = ru + rt;
            if (du || dt) printf("duplicates round=%ld udp=%d tcp=%d\n", rounds, du, dt);
        }
        for (int i = 0; i < k; i++)
            if (held[i] >= 0) close(held[i]);
        long r = rss_kb();
        if (r > rss_max) rss_max = r;
        if (rounds == 1) {
            fd_start = count_fds();
            rss_start = r;
        }
        if (rounds % 100 == 0)
            printf("progress connects=%ld failures=%ld fds=%d rss_kb=%ld\n", done, fails, count_fds(), r);
        rounds++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (fd_start < 0) fd_start = count_fds(), rss_start = rss_kb();
    printf("connects=%ld failures=%ld last_errno=%d duplicates=%ld max_connected_rows=%ld fd_start=%d fd_end=%d "
           "rss_start_kb=%ld rss_end_kb=%ld rss_max_kb=%ld seconds=%.1f\n",
           done, fails, lasterr, dup_total, max_rows, fd_start, count_fds(), rss_start, rss_kb(), rss_max,
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
