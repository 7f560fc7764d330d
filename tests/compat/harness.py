#!/usr/bin/python3
"""Servers and load generators for the compatibility suite (tests/compat.rs).

Run inside a `connectx _netns` namespace, never under the library (the program under test is).
Every client side here binds fixed ports outside the test's ephemeral range, so only the program
under test uses ephemeral ports.

  slowhttp ADDR:PORT... [--delay S]   HTTP/1.1: answer each request after S seconds with the
                                      body `ok ADDR`, then close
  slowdns ADDR:PORT... [--delay S]    DNS over UDP: answer each query (A 10.0.0.1) after S s
  hold ADDR:PORT...                   TCP echo; the connection stays until the client closes
  http N URL[,URL...] [--via HOST:PORT] [--src-base P] [--timeout S]
                                      N concurrent GETs (absolute URL when --via is a proxy,
                                      else to the URL's host), URLs in turn; prints `ok=K fail=F`
  dns N SERVER:PORT [--src P] [--timeout S]
                                      N distinct queries from one socket; prints `ok=K fail=F`
Servers print `ready` once bound and go to the background.
"""
import asyncio
import os
import socket
import struct
import sys
import time


def addr(s):
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), int(port)


def opt(args, name, default, conv=float):
    if name in args:
        i = args.index(name)
        v = conv(args[i + 1])
        del args[i : i + 2]
        return v
    return default


def bound(addrs, kind):
    """Binds every server socket before going to the background (so `ready` means ready)."""
    socks = []
    for a in addrs:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr(a))
        if kind == socket.SOCK_STREAM:
            s.listen(1024)
        s.setblocking(False)
        socks.append(s)
    background()
    return socks


def background():
    print("ready", flush=True)
    if os.fork():
        os._exit(0)
    os.setsid()
    fd = os.open("/dev/null", os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)


async def slowhttp(addrs, delay, lifetime):
    async def handle(reader, writer):
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            await asyncio.sleep(delay)
            host = writer.get_extra_info("sockname")[0]
            body = f"ok {host}\n".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except Exception:
            pass
        writer.close()

    for s in addrs:
        await asyncio.start_server(handle, sock=s, backlog=1024)
    await asyncio.sleep(lifetime)


async def hold(addrs, lifetime):
    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except Exception:
            pass
        writer.close()

    for s in addrs:
        await asyncio.start_server(handle, sock=s, backlog=1024)
    await asyncio.sleep(lifetime)


def dns_answer(query):
    # Header: same id, QR=1 RD RA, 1 question, 1 answer.
    qid = query[:2]
    end = 12
    while query[end] != 0:
        end += query[end] + 1
    question = query[12 : end + 5]
    header = qid + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 1])
    return header + question + answer


class SlowDns(asyncio.DatagramProtocol):
    def __init__(self, delay):
        self.delay = delay

    def connection_made(self, transport):
        self.t = transport

    def datagram_received(self, data, peer):
        try:
            reply = dns_answer(data)
        except Exception:
            return
        asyncio.get_running_loop().call_later(self.delay, self.t.sendto, reply, peer)


async def slowdns(addrs, delay, lifetime):
    loop = asyncio.get_running_loop()
    for s in addrs:
        await loop.create_datagram_endpoint(lambda: SlowDns(delay), sock=s)
    await asyncio.sleep(lifetime)


async def http_load(n, urls, via, src_base, timeout):
    async def one(i):
        url = urls[i % len(urls)]
        hostport, _, path = url.split("://", 1)[1].partition("/")
        target = via or hostport
        h, p = addr(target if ":" in target else target + ":80")
        line = url if via else "/" + path
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", src_base + i))
        s.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(s, (h, p)), timeout)
            r, w = await asyncio.open_connection(sock=s)
            w.write(f"GET {line} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode())
            data = await asyncio.wait_for(r.read(), timeout)
            w.close()
            return data.startswith(b"HTTP/1.1 200") and b"\r\n\r\nok 127.0.0." in data
        except Exception:
            s.close()
            return False

    loop = asyncio.get_running_loop()
    res = await asyncio.gather(*(one(i) for i in range(n)))
    print(f"ok={sum(res)} fail={n - sum(res)}")


def dns_query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def dns_load(n, server, src, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", src))
    dst = addr(server)
    for i in range(n):
        s.sendto(dns_query(0x1000 + i, f"q{i}.{os.getpid()}.example"), dst)
    got = set()
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            data = s.recv(4096)
        except socket.timeout:
            break
        qid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
        if 0x1000 <= qid < 0x1000 + n and flags & 0xF == 0 and ancount >= 1:
            got.add(qid)
    print(f"ok={len(got)} fail={n - len(got)}")


def main():
    args = sys.argv[1:]
    what = args.pop(0)
    delay = opt(args, "--delay", 3.0)
    lifetime = opt(args, "--seconds", 60.0)
    if what == "slowhttp":
        asyncio.run(slowhttp(bound(args, socket.SOCK_STREAM), delay, lifetime))
    elif what == "slowdns":
        asyncio.run(slowdns(bound(args, socket.SOCK_DGRAM), delay, lifetime))
    elif what == "hold":
        asyncio.run(hold(bound(args, socket.SOCK_STREAM), lifetime))
    elif what == "http":
        via = opt(args, "--via", None, str)
        src_base = opt(args, "--src-base", 20000, int)
        timeout = opt(args, "--timeout", 15.0)
        asyncio.run(http_load(int(args[0]), args[1].split(","), via, src_base, timeout))
    elif what == "dns":
        src = opt(args, "--src", 20000, int)
        timeout = opt(args, "--timeout", 10.0)
        dns_load(int(args[0]), args[1], src, timeout)
    else:
        sys.exit(f"harness.py: unknown command {what}")


if __name__ == "__main__":
    main()
