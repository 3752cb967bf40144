//go:build linux

package e2e

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// reservePort holds addr's port, bound but not listening, until release (or
// the test's end): a connection to it is refused, as by a gateway that is away,
// and no other server can bind it meanwhile. A port merely left free can be
// taken by a concurrent test's server (go test runs packages side by side, and
// make test the long outage beside them), and the agent would then send its
// queue there. The socket has no SO_REUSEADDR, so even a listener that sets it
// (Go's do) is refused; for the same reason the bind fails while connections of
// the server that just left the port linger in TIME_WAIT, and then the port
// stays unreserved, as it was before, and the test says so.
func reservePort(t *testing.T, addr string) (release func()) {
	t.Helper()
	host, portText, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	port, err := strconv.Atoi(portText)
	require.NoError(t, err)
	ip := net.ParseIP(host).To4()
	require.NotNil(t, ip, "reservePort takes an IPv4 address, not %q", addr)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	sa := &unix.SockaddrInet4{Port: port}
	copy(sa.Addr[:], ip)
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		require.ErrorIs(t, err, unix.EADDRINUSE, "reserving %s", addr)
		t.Logf("%s left unreserved (its last server's connections linger): %v", addr, err)
		return func() {}
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = unix.Close(fd) }) }
	t.Cleanup(release)
	return release
}

// awayAddr is a loopback address that refuses connections for the whole test:
// where an agent sends whose gateway never comes.
func awayAddr(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

func TestReservedPortRefusesAndCannotBeTaken(t *testing.T) {
	addr := awayAddr(t)
	_, err := net.Dial("tcp", addr)
	require.ErrorIs(t, err, unix.ECONNREFUSED, "a connection to the away address")
	_, err = net.Listen("tcp", addr)
	require.ErrorIs(t, err, unix.EADDRINUSE, "another server taking the away address")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	held := l.Addr().String()
	require.NoError(t, l.Close())
	release := reservePort(t, held)
	_, err = net.Listen("tcp", held)
	require.ErrorIs(t, err, unix.EADDRINUSE, "another server taking the reserved port")
	release()
	l, err = net.Listen("tcp", held)
	require.NoError(t, err, "the port, released, is the gateway's again")
	require.NoError(t, l.Close())
}
