/* udprace: races on UDP sockets that share a port (run on a one-port range, 127.0.0.x).
 *   udprace reconnect ROUNDS   16 sockets share the port, each connected to its own
 *                              destination; 16 threads reconnect them at once to 127.0.0.2:7.
 *                              Prints the most sockets ever found on that 4-tuple.
 *   udprace samesocket ROUNDS  one socket owns (port, 127.0.0.2:7); two threads connect one
 *                              fresh socket at once, to 127.0.0.3:7 and to 127.0.0.2:7.
 *                              Prints how many rounds ended with two sockets on one 4-tuple. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    return 2;
}
