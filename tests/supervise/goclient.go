// The Go program of tests/supervise.rs, built there with CGO_ENABLED=0 (static): its socket
// calls are raw system calls, which a preload never sees.
//
//	goclient -proto tcp|udp -mode laddr|noladdr|port:P -src IP -dst A:P,B:P -count N [-parallel K] [-hold S] [-delay MS]
//	  dials N connections round-robin over the destinations (stops at the first failure; with
//	  -parallel K, K goroutines dial at once), each with LocalAddr src (port 0 or P) or none,
//	  echoes a payload of its own on each, and prints one line:
//	  opened=K failed=F failed_step=bind|connect|echo|none errno=NAME echo_ok=A echo_bad=B dup_tuples=D
//	goclient -serve: a server listening on 127.0.0.1:0, echoing, dialled three times by itself:
//	  listen_port=P served_port=P echo_ok=3
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var names = map[syscall.Errno]string{
	syscall.EADDRINUSE: "EADDRINUSE", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.EAGAIN: "EAGAIN",
	syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ENOSYS: "ENOSYS", syscall.EINVAL: "EINVAL",
	syscall.EPERM: "EPERM", syscall.EACCES: "EACCES", syscall.ETIMEDOUT: "ETIMEDOUT",
}

func classify(err error) (string, string) {
	step := "connect"
	var se *os.SyscallError
	if errors.As(err, &se) {
		step = se.Syscall
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		if n, ok := names[en]; ok {
			return step, n
		}
		return step, fmt.Sprintf("errno%d", int(en))
	}
	return "echo", strings.ReplaceAll(err.Error(), " ", "_")
}

func main() {
	proto := flag.String("proto", "tcp", "")
	mode := flag.String("mode", "laddr", "")
	src := flag.String("src", "127.0.0.1", "")
	dst := flag.String("dst", "", "")
	count := flag.Int("count", 1, "")
	parallel := flag.Int("parallel", 1, "")
	hold := flag.Int("hold", 0, "")
	serve := flag.Bool("serve", false, "")
	delay := flag.Int("delay", 0, "milliseconds between two dials")
	flag.Parse()
	if *serve {
		serveSelf()
		return
	}
	dsts := strings.Split(*dst, ",")
	port := 0
	if strings.HasPrefix(*mode, "port:") {
		port, _ = strconv.Atoi(strings.TrimPrefix(*mode, "port:"))
	}
	var d net.Dialer
	d.Timeout = 5 * time.Second
	if *mode != "noladdr" {
		ip := net.ParseIP(*src)
		if *proto == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: ip, Port: port}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: ip, Port: port}
		}
	}
	var mu sync.Mutex
	opened, failed, echoOK, echoBad := 0, 0, 0, 0
	step, errno := "none", "none"
	tuples := map[string]int{}
	var conns []net.Conn
	next := 0
	stop := false
	var wg sync.WaitGroup
	for w := 0; w < *parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if stop || next >= *count {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				time.Sleep(time.Duration(*delay) * time.Millisecond)
				c, err := d.Dial(*proto, dsts[i%len(dsts)])
				if err == nil {
					err = echo(c, i)
				}
				mu.Lock()
				if err != nil {
					failed++
					if step == "none" {
						step, errno = classify(err)
					}
					if c != nil && step == "echo" {
						echoBad++
					}
					stop = *parallel == 1
				} else {
					opened++
					echoOK++
					tuples[c.LocalAddr().String()+">"+c.RemoteAddr().String()]++
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	dups := 0
	for _, n := range tuples {
		dups += n - 1
	}
	fmt.Printf("opened=%d failed=%d failed_step=%s errno=%s echo_ok=%d echo_bad=%d dup_tuples=%d\n",
		opened, failed, step, errno, echoOK, echoBad, dups)
	time.Sleep(time.Duration(*hold) * time.Second)
	for _, c := range conns {
		c.Close()
	}
}

// echo sends a payload of this connection's own and expects it back.
func echo(c net.Conn, i int) error {
	msg := fmt.Sprintf("go-%d-%d\n", os.Getpid(), i)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != msg {
		return errors.New("wrong reply")
	}
	return nil
}

func serveSelf() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Printf("listen_port=0 errno=%s\n", err)
		return
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				c.Write(buf[:n])
				c.Close()
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	ok := 0
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil && echo(c, i) == nil {
			ok++
		}
		if c != nil {
			c.Close()
		}
	}
	served := ln.Addr().(*net.TCPAddr).Port
	fmt.Printf("listen_port=%d served_port=%d echo_ok=%d\n", port, served, ok)
}
