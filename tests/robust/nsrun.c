/* nsrun: run a command in a fresh network namespace with loopback up and a chosen
 * ephemeral port range, optionally as another uid, with extra environment variables set
 * only for the command (so nsrun itself never runs under the preload library).
 *   nsrun [-r LO-HI] [-u UID] [-E VAR=VAL]... [-U VAR]... -- PROG ARGS...
 * Exit status: PROG's, or 120+ when the setup fails (with a message on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "nsrun: %s: %s\n", what, strerror(errno));
    exit(121);
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) die(path);
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die(path);
    close(fd);
}

int main(int argc, char **argv) {
    const char *range = NULL;
    long uid = -1;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (!strcmp(argv[i], "-r") && i + 1 < argc) range = argv[++i];
        else if (!strcmp(argv[i], "-u") && i + 1 < argc) uid = atol(argv[++i]);
        else if (!strcmp(argv[i], "-E") && i + 1 < argc) { i++; }
        else if (!strcmp(argv[i], "-U") && i + 1 < argc) { i++; }
        else { fprintf(stderr, "nsrun: bad argument %s\n", argv[i]); return 122; }
    }
    if (i >= argc) { fprintf(stderr, "nsrun: no command\n"); return 122; }
    if (unshare(CLONE_NEWNET) < 0) die("unshare(CLONE_NEWNET) (needs root)");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS lo");
    close(s);
    if (range) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s\n", range);
        for (char *p = buf; *p; p++) if (*p == '-') *p = ' ';
        write_file("/proc/sys/net/ipv4/ip_local_port_range", buf);
    }
    /* ICMP errors are never rate-limited here (the default is 1000/s with bursts of 50), so
     * which sends come back ECONNREFUSED does not depend on how fast the command runs: the
     * differential and fuzz runs compare it with and without the library. */
    write_file("/proc/sys/net/ipv4/icmp_msgs_per_sec", "100000000\n");
    write_file("/proc/sys/net/ipv4/icmp_msgs_burst", "100000000\n");
    write_file("/proc/sys/net/ipv4/icmp_ratelimit", "0\n");
    write_file("/proc/sys/net/ipv6/icmp/ratelimit", "0\n");
    /* environment for the command only */
    for (int j = 1; j < i - 1; j++) {
        if (!strcmp(argv[j], "-E")) { if (putenv(argv[++j]) != 0) die("putenv"); }
        else if (!strcmp(argv[j], "-U")) unsetenv(argv[++j]);
        else if (!strcmp(argv[j], "-r") || !strcmp(argv[j], "-u")) j++;
    }
    if (uid >= 0) {
        if (setgroups(0, NULL) < 0) die("setgroups");
        if (setgid((gid_t)uid) < 0) die("setgid");
        if (setuid((uid_t)uid) < 0) die("setuid");
    }
    execv(argv[i], argv + i);
    fprintf(stderr, "nsrun: cannot run %s: %s\n", argv[i], strerror(errno));
    return 127;
}
