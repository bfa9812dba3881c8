package proxy

// Parking idle keep-alive HTTP connections.
//
// A keep-alive client that has sent nothing for idleRelease already gives
// back its upstream connection and buffers (httpConn.idleWait). What it
// still held was its handler goroutine, parked in the runtime poller with
// the stack it grew serving requests: about 8 KiB a client, more than ten
// times nginx's cost for an idle keep-alive connection (bench/run's idle
// group). So such a connection is parked instead: its handler state goes
// back to the pool, its socket joins the parker's epoll set (one-shot),
// and the goroutine is free for other connections. When the client sends
// its next request (or closes), the parker hands the connection to a
// handler goroutine again (Server.startHandler), which carries on as if it
// had waited itself. A parked connection costs its socket, a parkedConn
// and a map entry: well under 1 KiB.
//
// The client's idle timeout still applies: the parker's sweep (every
// parkSweep) resumes the connections whose timeout has passed, and their
// handler closes them. When the Server drains, every parked connection is
// resumed at once and closes, as an idle one always did.
//
// Parking needs an epoll set in the runtime's poller (park_linux.go); on
// other systems an idle client keeps its goroutine (park_other.go).

// parkedConn is a parked connection: what its handler needs to resume.
type parkedConn struct {
	job     connJob  // as the connection was admitted (resume is nil)
	ci      connInfo // client, destination, original upstream
	host    string   // the last decided host (httpConn.host)
	fd      int
	token   uint64
	expires int64 // unix nanoseconds: the end of the client's idle timeout
	expired bool  // resumed by the sweep: the handler closes it
}
