/* udprace: races on UDP sockets that share a port (run on a one-port range, 127.0.0.x).
 *   udprace reconnect ROUNDS   16 sockets share the port, each connected to its own
 *                              destination; 16 threads reconnect them at once to 127.0.0.2:7.
 *                              Prints the most sockets ever found on that 4-tuple.
 *   udprace samesocket ROUNDS  one socket owns (port, 127.0.0.2:7); two threads connect one
 *                              fresh socket at once, to 127.0.0.3:7 and to 127.0.0.2:7.
 *                              Prints how many rounds ended with two sockets on one 4-tuple.
 *   udprace fill ROUNDS R      8 threads at once, each connecting sockets to its own
 *                              destination until EAGAIN: each must get R (the range's ports).
 *                              Prints how many fills came out short.
 *   udprace emfile 1           a owns (port, 127.0.0.2:7), b shares the port to 127.0.0.3:7; a
 *                              child fills its fd table (no fd left for a check) and reconnects
 *                              b to 127.0.0.2:7: it must fail rather than connect unchecked.
 *                              Prints the child's errno and whether b ended on a's 4-tuple. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 16
static pthread_barrier_t bar;
struct job { int fd; int host; };

static struct sockaddr_in to(int host) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7)};
    a.sin_addr.s_addr = htonl(0x7f000000u | (unsigned)host);
    return a;
}
static void *go(void *p) {
    struct job *j = p;
    struct sockaddr_in a = to(j->host);
    pthread_barrier_wait(&bar);
    connect(j->fd, (struct sockaddr *)&a, sizeof a);
    return NULL;
}
/* 1 if fd is connected from `port` to 127.0.0.host:7 */
static int on(int fd, int host) {
    struct sockaddr_in p; socklen_t l = sizeof p;
    if (getpeername(fd, (struct sockaddr *)&p, &l) < 0) return 0;
    return p.sin_addr.s_addr == htonl(0x7f000000u | (unsigned)host) && p.sin_port == htons(7);
}
static unsigned short port_of(int fd) {
    struct sockaddr_in s; socklen_t l = sizeof s;
    if (getsockname(fd, (struct sockaddr *)&s, &l) < 0) return 0;
    return ntohs(s.sin_port);
}

static int fill_r;
static void *fill(void *p) {
    struct job *j = p;
    int fds[256], n = 0;
    struct sockaddr_in a = to(j->host);
    pthread_barrier_wait(&bar);
    while (n < 256) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0) break;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); break; }
        fds[n++] = fd;
    }
    j->fd = n;
    /* hold them until every thread is done, so that each fill competes with the others */
    pthread_barrier_wait(&bar);
    for (int i = 0; i < n; i++) close(fds[i]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: udprace reconnect|samesocket ROUNDS\n"); return 2; }
    int rounds = atoi(argv[2]);
    if (!strcmp(argv[1], "reconnect")) {
        int worst = 0, first_ok = N;
        pthread_barrier_init(&bar, NULL, N);
        for (int r = 0; r < rounds; r++) {
            int fds[N], ok = 0;
            struct job jobs[N];
            pthread_t t[N];
            for (int i = 0; i < N; i++) {
                fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
                struct sockaddr_in a = to(10 + i);
                ok += connect(fds[i], (struct sockaddr *)&a, sizeof a) == 0;
                jobs[i] = (struct job){fds[i], 2};
            }
            if (ok < first_ok) first_ok = ok;
            for (int i = 0; i < N; i++) pthread_create(&t[i], NULL, go, &jobs[i]);
            for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
            int n = 0;
            for (int i = 0; i < N; i++) n += on(fds[i], 2);
            if (n > worst) worst = n;
            for (int i = 0; i < N; i++) close(fds[i]);
        }
        printf("reconnect rounds=%d first_ok=%d most_on_dst=%d\n", rounds, first_ok, worst);
        return 0;
    }
    if (!strcmp(argv[1], "samesocket")) {
        int dups = 0, owned = 0;
        pthread_barrier_init(&bar, NULL, 2);
        for (int r = 0; r < rounds; r++) {
            int a = socket(AF_INET, SOCK_DGRAM, 0);
            struct sockaddr_in d = to(2);
            owned += connect(a, (struct sockaddr *)&d, sizeof d) == 0;
            int b = socket(AF_INET, SOCK_DGRAM, 0);
            struct job j1 = {b, 3}, j2 = {b, 2};
            pthread_t t1, t2;
            pthread_create(&t1, NULL, go, &j1);
            pthread_create(&t2, NULL, go, &j2);
            pthread_join(t1, NULL);
            pthread_join(t2, NULL);
            dups += on(a, 2) && on(b, 2) && port_of(a) == port_of(b);
            close(a);
            close(b);
        }
        printf("samesocket rounds=%d owned=%d dups=%d\n", rounds, owned, dups);
        return 0;
    }
    if (!strcmp(argv[1], "emfile")) {
        int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in d2 = to(2), d3 = to(3);
        if (connect(a, (struct sockaddr *)&d2, sizeof d2) < 0) { perror("a"); return 2; }
        if (connect(b, (struct sockaddr *)&d3, sizeof d3) < 0) { perror("b"); return 2; }
        int same_port = port_of(a) == port_of(b);
        pid_t pid = fork();
        if (pid == 0) {
            while (dup(0) >= 0) {}
            int r = connect(b, (struct sockaddr *)&d2, sizeof d2);
            _exit(r == 0 ? 0 : errno);
        }
        int st;
        waitpid(pid, &st, 0);
        int dup_tuple = on(a, 2) && on(b, 2) && port_of(a) == port_of(b);
        printf("emfile same_port=%d child_errno=%d dup=%d\n", same_port, WEXITSTATUS(st), dup_tuple);
        return 0;
    }
    if (!strcmp(argv[1], "fill") && argc > 3) {
        fill_r = atoi(argv[3]);
        int short_fills = 0, total = 0;
        pthread_barrier_init(&bar, NULL, 8);
        for (int r = 0; r < rounds; r++) {
            struct job jobs[8];
            pthread_t t[8];
            for (int i = 0; i < 8; i++) {
                jobs[i] = (struct job){0, 20 + i};
                pthread_create(&t[i], NULL, fill, &jobs[i]);
            }
            for (int i = 0; i < 8; i++) {
                pthread_join(t[i], NULL);
                short_fills += jobs[i].fd != fill_r;
                total++;
            }
        }
        printf("fill fills=%d short=%d\n", total, short_fills);
        return 0;
    }
    return 2;
}
