/* The IPv4 address builder the test programs in tests/robust/ share. */
#ifndef CX_ROBUST_INET_H
#define CX_ROBUST_INET_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static inline struct sockaddr_in sin4(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}
#endif
