/* Supporting probe for BENCHMARKS.md (near exhaustion): what one SOCK_DIAG exact lookup costs,
 * one request per sendto+recv (what connectx does per probed port) versus K requests in one
 * sendto with the K replies read by one recvmmsg, versus one dump of the whole UDP table.
 * Run (as root) inside a fresh namespace, e.g. `unshare -n sh -c 'ip link set lo up; ./diag_probe 900 20000 16'`;
 * it first connects UDP sockets from FULL of the ports 127.0.0.1:40000..40999 to 127.0.0.2:7000,
 * then looks up ports of that range ITER times:
 *   diag_probe FULL ITER K
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct req { struct nlmsghdr h; struct inet_diag_req_v2 r; };

static unsigned long long now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void fill(struct req *q, unsigned seq, int lport) {
    memset(q, 0, sizeof *q);
    q->h.nlmsg_len = sizeof *q; q->h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q->h.nlmsg_flags = NLM_F_REQUEST; q->h.nlmsg_seq = seq;
    q->r.sdiag_family = AF_INET; q->r.sdiag_protocol = IPPROTO_UDP; q->r.idiag_states = ~0u;
    q->r.id.idiag_sport = htons(7000); q->r.id.idiag_dport = htons((unsigned short)lport);
    inet_pton(AF_INET, "127.0.0.2", q->r.id.idiag_src);
    inet_pton(AF_INET, "127.0.0.1", q->r.id.idiag_dst);
    q->r.id.idiag_cookie[0] = q->r.id.idiag_cookie[1] = ~0u;
}

int main(int argc, char **argv) {
    int full = atoi(argv[1]), iter = atoi(argv[2]), k = atoi(argv[3]);
    for (int i = 0; i < full; i++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40000 + i)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(7000)};
        inet_pton(AF_INET, "127.0.0.2", &d.sin_addr);
        if (bind(s, (void *)&a, sizeof a) || connect(s, (void *)&d, sizeof d)) { perror("setup"); return 1; }
    }
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    int rb = 1 << 20; setsockopt(nl, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    static char buf[64][512];
    struct req qs[64];
    unsigned seq = 1;
    unsigned long long t0 = now();
    int hits = 0;
    for (int i = 0; i < iter; i++) {
        fill(&qs[0], seq++, 40000 + i % 1000);
        send(nl, &qs[0], sizeof qs[0], 0);
        ssize_t n = recv(nl, buf[0], sizeof buf[0], MSG_DONTWAIT);
        if (n > 0 && ((struct nlmsghdr *)buf[0])->nlmsg_type == SOCK_DIAG_BY_FAMILY) hits++;
    }
    unsigned long long t1 = now();
    int bhits = 0;
    struct mmsghdr mm[64]; struct iovec iov[64];
    for (int i = 0; i < iter / k; i++) {
        for (int j = 0; j < k; j++) fill(&qs[j], seq++, 40000 + (i * k + j) % 1000);
        send(nl, qs, sizeof qs[0] * k, 0);
        for (int j = 0; j < k; j++) {
            iov[j].iov_base = buf[j]; iov[j].iov_len = sizeof buf[j];
            memset(&mm[j], 0, sizeof mm[j]); mm[j].msg_hdr.msg_iov = &iov[j]; mm[j].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(nl, mm, k, MSG_DONTWAIT, NULL);
        for (int j = 0; j < got; j++)
            if (((struct nlmsghdr *)buf[j])->nlmsg_type == SOCK_DIAG_BY_FAMILY) bhits++;
    }
    unsigned long long t2 = now();
    /* A whole-table dump (what learning every port taken to a destination in one request costs
     * without a kernel-side filter): NLM_F_DUMP over all UDP sockets, all replies read. */
    static char big[65536];
    int dumps = 50, socks = 0;
    unsigned long long t3 = now();
    for (int i = 0; i < dumps; i++) {
        fill(&qs[0], seq++, 0);
        qs[0].h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        memset(&qs[0].r.id, 0, sizeof qs[0].r.id);
        qs[0].r.id.idiag_cookie[0] = qs[0].r.id.idiag_cookie[1] = ~0u;
        send(nl, &qs[0], sizeof qs[0], 0);
        for (int done = 0; !done;) {
            ssize_t n = recv(nl, big, sizeof big, 0);
            if (n <= 0) break;
            for (struct nlmsghdr *h = (struct nlmsghdr *)big; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
                if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) { done = 1; break; }
                if (i == 0) socks++;
            }
        }
    }
    unsigned long long t4 = now();
    printf("single: %.2f us/lookup (hits %d/%d); batch of %d: %.2f us/lookup (hits %d/%d); "
           "full dump of %d UDP sockets: %.1f us\n",
           (t1 - t0) / 1000.0 / iter, hits, iter, k, (t2 - t1) / 1000.0 / (iter / k * k), bhits,
           iter / k * k, socks, (t4 - t3) / 1000.0 / dumps);
    return 0;
}
