/* Shared helpers for the connectx test programs (scenarios.c, life.c).
 *
 * enter_netns(): puts the process into a fresh network namespace (a user
 * namespace too when not root), brings lo up and sets the sysctls the tests
 * rely on, then re-executes the program inside the namespace so that a
 * preloaded library initialises there (its own netlink sockets belong to the
 * namespace the program runs in).
 */
#ifndef CX_COMMON_H
#define CX_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

static void cx_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "FATAL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (errno %d %s)\n", errno, strerror(errno));
	va_end(ap);
	exit(2);
}

static int cx_write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Returns 1 when already inside (after the re-exec), otherwise sets up the
 * namespace and re-executes argv; never returns in that case. */
static int enter_netns(char **argv, const char *port_lo, const char *port_hi)
{
	const char *mark = getenv("CX_IN_NETNS");
	if (mark && strcmp(mark, "1") == 0) {
		unsetenv("CX_IN_NETNS");
		return 1;
	}
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (uid == 0) {
		if (unshare(CLONE_NEWNET) != 0)
			cx_die("unshare(CLONE_NEWNET)");
	} else {
		char buf[64];
		if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
			cx_die("unshare(CLONE_NEWUSER|CLONE_NEWNET)");
		if (cx_write_file("/proc/self/setgroups", "deny") != 0)
			cx_die("setgroups deny");
		snprintf(buf, sizeof buf, "0 %u 1", (unsigned)uid);
		if (cx_write_file("/proc/self/uid_map", buf) != 0)
			cx_die("uid_map");
		snprintf(buf, sizeof buf, "0 %u 1", (unsigned)gid);
		if (cx_write_file("/proc/self/gid_map", buf) != 0)
			cx_die("gid_map");
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		cx_die("socket for ioctl");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
		cx_die("SIOCGIFFLAGS lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
		cx_die("SIOCSIFFLAGS lo");
	close(s);
	char range[64];
	snprintf(range, sizeof range, "%s %s", port_lo, port_hi);
	if (cx_write_file("/proc/sys/net/ipv4/ip_local_port_range", range) != 0)
		cx_die("ip_local_port_range");
	if (cx_write_file("/proc/sys/net/ipv4/tcp_fastopen", "3") != 0)
		cx_die("tcp_fastopen");
	/* ping sockets (SOCK_DGRAM/IPPROTO_ICMP) for everybody: not UDP. */
	(void)cx_write_file("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
	setenv("CX_IN_NETNS", "1", 1);
	execv("/proc/self/exe", argv);
	cx_die("re-exec /proc/self/exe");
	return 0;
}

#endif
