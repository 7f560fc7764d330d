/* churn ROUNDS USLEEP THREADS: each thread binds 127.0.0.1:0 and connects (UDP and TCP in
 * turn) to 127.0.0.2..4:7, closes, sleeps; at the end one line: ok=N and the errnos seen.
 * Built static: under `connectx run` every bind and connect is a trapped call. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int rounds, pause_us, ok, errs[256][2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void note(int *slot) {
    pthread_mutex_lock(&mu);
    ++*slot;
    pthread_mutex_unlock(&mu);
}

static void *run(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < rounds; i++) {
        int s = socket(AF_INET, (i & 1) ? SOCK_DGRAM : SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (bind(s, (void *)&a, sizeof a) != 0) {
            note(&errs[errno & 255][0]);
        } else {
            char ip[16];
            snprintf(ip, sizeof ip, "127.0.0.%ld", 2 + (i + t) % 3);
            inet_pton(AF_INET, ip, &a.sin_addr);
            a.sin_port = htons(7);
            note(connect(s, (void *)&a, sizeof a) == 0 ? &ok : &errs[errno & 255][1]);
        }
        close(s);
        usleep(pause_us);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    rounds = atoi(argv[1]);
    pause_us = atoi(argv[2]);
    int n = atoi(argv[3]);
    pthread_t th[64];
    if (n < 1 || n > 64) return 2;
    for (long i = 0; i < n; i++) pthread_create(&th[i], NULL, run, (void *)i);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    printf("ok=%d", ok);
    for (int e = 0; e < 256; e++)
        if (errs[e][0] || errs[e][1]) printf(" %s:bind=%d,connect=%d", strerrorname_np(e), errs[e][0], errs[e][1]);
    printf("\n");
    return 0;
}
