/* secure: reports whether it runs in secure-execution mode (AT_SECURE), whether connectx's
 * connect() is the one the program calls, and the capacity of UDP and TCP
 * bind(127.0.0.1,0)+connect to 3 destinations (kernel alone: R; with connectx: R x 3). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <unistd.h>
#include "inet.h"


static int capacity(int type, int *err) {
    int k = 0;
    char ip[32];
    *err = 0;
    for (; k < 100; k++) {
        int s = socket(AF_INET, type, 0);
        struct sockaddr_in a = sin4("127.0.0.1", 0);
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { *err = errno; break; }
        snprintf(ip, sizeof ip, "127.0.0.%d", 2 + k % 3);
        a = sin4(ip, type == SOCK_STREAM ? 8080 : 7);
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { *err = errno; break; }
    }
    return k;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    Dl_info info;
    void *c = dlsym(RTLD_DEFAULT, "connect");
    int loaded = c && dladdr(c, &info) && info.dli_fname && strstr(info.dli_fname, "connectx");
    printf("at_secure=%lu uid=%d euid=%d loaded=%d connect_from=%s\n", getauxval(AT_SECURE), (int)getuid(),
           (int)geteuid(), loaded, c && dladdr(c, &info) ? info.dli_fname : "?");
    int ls[3];
    for (int i = 0; i < 3; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "127.0.0.%d", 2 + i);
        struct sockaddr_in a = sin4(ip, 8080);
        ls[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(ls[i], (struct sockaddr *)&a, sizeof a) < 0 || listen(ls[i], 1000) < 0) {
            printf("harness_error=listen errno=%d\n", errno);
            return 2;
        }
    }
    int e1, e2;
    int u = capacity(SOCK_DGRAM, &e1);
    int t = capacity(SOCK_STREAM, &e2);
    printf("udp=%d udp_errno=%d tcp=%d tcp_errno=%d\n", u, e1, t, e2);
    return 0;
}
