// Command rawclient speaks nixlayer daemon's protocol directly, as a
// hostile local user would, for the end-to-end tests (the `daemon
// raw-client` script command builds it):
//
//	rawclient SOCKET call METHOD REQUEST [FDS]  one call whose frame carries
//	                                            FDS descriptors (of /dev/null,
//	                                            4 per byte); prints the answer
//	rawclient SOCKET big SIZE                   a header announcing SIZE bytes;
//	                                            prints the answer
//	rawclient SOCKET conns N                    N connections held open at once,
//	                                            a status call on each; prints
//	                                            how many were refused and why
//
// It exits 0 when the daemon answered, whatever it answered.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 4 {
		fail(fmt.Errorf("usage: rawclient SOCKET call|big|conns ARGS"))
	}
	socket, mode, args := os.Args[1], os.Args[2], os.Args[3:]
	var err error
	switch mode {
	case "call":
		fds := 0
		if len(args) == 3 {
			fds, err = strconv.Atoi(args[2])
			if err != nil {
				fail(err)
			}
		}
		err = call(socket, args[0], args[1], fds)
	case "big":
		err = big(socket, args[0])
	case "conns":
		n, aerr := strconv.Atoi(args[0])
		if aerr != nil {
			fail(aerr)
		}
		err = conns(socket, n)
	default:
		err = fmt.Errorf("unknown mode %s", mode)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "rawclient:", err)
	os.Exit(1)
}

func dial(socket string) (*net.UnixConn, error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	return c.(*net.UnixConn), nil
}

func frame(method, request string) []byte {
	body := `{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{"token":"1","request":` + request + `}}`
	return []byte(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
}

// answer reads one framed message: its body.
func answer(c net.Conn) (string, error) {
	in := bufio.NewReader(c)
	length := -1
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("no answer: %w", err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length:"); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 || length > 64<<20 {
		return "", fmt.Errorf("bad answer length %d", length)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(in, body); err != nil {
		return "", err
	}
	return string(body), nil
}

// printAnswer prints the answer on c.
func printAnswer(c net.Conn) error {
	body, err := answer(c)
	if err != nil {
		return err
	}
	fmt.Println(body)
	return nil
}

func call(socket, method, request string, fds int) error {
	if !json.Valid([]byte(request)) {
		return fmt.Errorf("request %q is not JSON", request)
	}
	c, err := dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := frame(method, request)
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	for i := range msg {
		n := min(fds, 4)
		if n == 0 {
			if _, err := c.Write(msg[i:]); err != nil {
				return err
			}
			break
		}
		fds -= n
		rights := make([]int, n)
		for k := range rights {
			rights[k] = int(null.Fd())
		}
		if _, _, err := c.WriteMsgUnix(msg[i:i+1], syscall.UnixRights(rights...), nil); err != nil {
			return fmt.Errorf("sending descriptors: %w", err)
		}
	}
	return printAnswer(c)
}

func big(socket, size string) error {
	c, err := dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "Content-Length: %s\r\n\r\n{\"jsonrpc\":", size); err != nil {
		return err
	}
	return printAnswer(c)
}

func conns(socket string, n int) error {
	var open []*net.UnixConn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for range n {
		c, err := dial(socket)
		if err != nil {
			return err
		}
		open = append(open, c)
	}
	refused, why := 0, ""
	for _, c := range open {
		c.Write(frame("nixlayer/status", "{}"))
		body, err := answer(c)
		if err != nil {
			return err
		}
		if strings.Contains(body, "limit") {
			refused++
			why = body
		}
	}
	fmt.Printf("refused %d of %d\n%s\n", refused, n, why)
	return nil
}
