//! The management's HTTP/1.1 server, small and strict, so that no client can hold it up or
//! grow it. It serves the API (`api`), GSLB's site exchange (`gslb::exchange`) and its
//! redirects (`gslb::redirect`), each on its own listener with its own threads.
//!
//! One thread owns every socket and multiplexes them with `poll(2)`: it accepts, reads each
//! request head (parsed by `httparse`), sends each answer and closes. A small fixed pool of
//! workers does the one thing that may wait, the round trip to the management loop; no
//! thread ever blocks on a client. One request per connection, answered with
//! `Connection: close`; the answer to a HEAD has no body. The bounds ([`Limits::DEFAULT`];
//! a server may take others):
//!
//! - the head (request line and headers) within 8 KiB and 32 header lines, else 431; the
//!   request target within 2 KiB, else 414; no body (413, never read: no call takes one);
//!   a head that is not HTTP/1.x gets 400;
//! - the whole head within 2 s of the connection's accept, else 408 and close (slowloris);
//!   the answer taken by the client within 5 s, else close;
//! - at most 64 open connections. A new one beyond that closes the oldest one that is not
//!   waiting on the management loop: an idle client, a slow head, a slow reader of its
//!   answer (a caller that sends its request at once, as `ctl` does, is answered long
//!   before 64 others arrive after it). When all 64 wait on the management loop, the new one
//!   is closed at once. Nothing waits in a queue of ours, and memory is bounded by the
//!   connections: a head buffer each, and the answers being sent;
//! - four workers, and as many jobs queued as there are connections (a server that answers
//!   everything at once has none);
//! - a 16 KiB socket receive buffer ([`listen`]), so that a client pushing megabytes cannot
//!   park them in the kernel's memory either.
//!
//! After its answer, a connection is half-closed and what the client still sends (a body we
//! refused) is read and dropped for up to a second, so that the close is a FIN and not a
//! reset that could destroy the answer before the client reads it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use serde_json::Value;

/// An answer: its status, body and headers. `Content-Type`, `Content-Length` and
/// `Connection: close` are always sent; [`Response::header`] adds others.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// More header lines, in order (`Location`, `X-SY-HMAC`...).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// `v`, pretty-printed.
    pub fn json(status: u16, v: &Value) -> Response {
        Response::text(
            status,
            "application/json",
            serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
        )
    }

    /// Prometheus' OpenMetrics text.
    pub fn metrics(body: String) -> Response {
        Response::text(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        )
    }

    /// `{"error": msg}`.
    pub fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": msg }))
    }

    /// `body` as it is, of type `content_type`.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    /// With one more header line. [`encode`] leaves out a line whose name or value holds a
    /// control character (a CR or LF would start a line of the client's choosing).
    pub fn header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// A server's bounds: [`Limits::DEFAULT`] for the API, the same without workers for the site
/// exchange, a longer head and no workers for the redirects, shorter times in tests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line and headers, in bytes (431 beyond).
    pub head_bytes: usize,
    /// The request target (path and query), in bytes (414 beyond).
    pub target_bytes: usize,
    /// Open connections, whatever their stage.
    pub connections: usize,
    /// From accept to the head's last byte (408 and close beyond).
    pub head_timeout: Duration,
    /// From the answer being ready to its last byte taken by the client (close beyond).
    pub write_timeout: Duration,
    /// Threads that run [`Reply::Later`] jobs (those that wait on the management loop);
    /// without any, such a job is answered 503.
    pub workers: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        head_bytes: 8 * 1024,
        target_bytes: 2 * 1024,
        connections: 64,
        head_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(5),
        workers: 4,
    };
}

/// Header lines a head may have (431 beyond): httparse fills a fixed array.
const MAX_HEADERS: usize = 32;

/// The longest method and version around a request target (`OPTIONS ` ... ` HTTP/1.1\r\n`),
/// to tell an over-long target before its request line ends.
const REQUEST_LINE_EXTRA: usize = 32;

/// After the answer, the client's leftovers are read (and dropped) for this long at most...
const LINGER: Duration = Duration::from_secs(1);
/// ... and up to this many bytes.
const LINGER_BYTES: usize = 64 * 1024;

/// A request head, parsed.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The values of the header lines named `name` (case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The head at the start of `buf`: `Ok(None)` while it is incomplete and within the limits,
/// else the refusal to send (400 garbage, 414 target too long, 431 head too large).
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if !buf.contains(&b'\n') && buf.len() > limits.target_bytes + REQUEST_LINE_EXTRA {
                Err(Response::error(414, "request target too long"))
            } else if buf.len() >= limits.head_bytes {
                Err(too_large(limits))
            } else {
                Ok(None)
            }
        }
        Ok(httparse::Status::Complete(n)) => {
            let target = req.path.unwrap_or_default();
            if n > limits.head_bytes {
                Err(too_large(limits))
            } else if target.len() > limits.target_bytes {
                Err(Response::error(414, "request target too long"))
            } else {
                Ok(Some(Head {
                    method: req.method.unwrap_or_default().to_string(),
                    target: target.to_string(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                }))
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(Response::error(
            431,
            &format!("more than {MAX_HEADERS} header lines"),
        )),
        Err(e) => Err(Response::error(400, &format!("malformed request: {e}"))),
    }
}

fn too_large(limits: &Limits) -> Response {
    Response::error(
        431,
        &format!("request head larger than {} bytes", limits.head_bytes),
    )
}

/// The bytes of `r` on the wire.
pub fn encode(r: &Response) -> Vec<u8> {
    let reason = match r.status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    let ctl = |s: &str| s.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f);
    for (name, value) in &r.headers {
        if !ctl(name) && !ctl(value) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(r.body.as_bytes());
    out
}

/// Work that may wait (on the management loop), run on a worker.
pub type Job = Box<dyn FnOnce() -> Response + Send>;

/// What to do with a request: answer it at once (on the server's thread: refusals, cheap
/// work) or on a worker.
pub enum Reply {
    Now(Response),
    Later(Job),
}

/// The running server; dropping it stops its threads.
pub struct Server {
    stop: Arc<AtomicBool>,
    wake: UnixStream,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.write(&[1]);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A listening socket with a backlog that holds a burst of connections until the server's
/// thread takes them (it takes them all at once, and closes the ones it has no room for),
/// and a small receive buffer, which its connections inherit: a request head is a few
/// KiB, and a client pushing megabytes must not park them in the kernel's memory (the
/// buffer grows to several MiB per connection by itself).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_recv_buffer_size(16 * 1024)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Serves `listener` until dropped; `route` turns each head into a [`Reply`]. The threads are
/// `name` (sockets) and `name-wN` (workers): at most 12 bytes, so that a worker's name is
/// whole under Linux's 15-byte limit.
pub fn start(
    listener: TcpListener,
    name: &'static str,
    limits: Limits,
    route: impl Fn(&Head) -> Reply + Send + 'static,
) -> io::Result<Server> {
    listener.set_nonblocking(true)?;
    let (wake_rx, wake) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (jobs, jobs_rx) = mpsc::sync_channel::<(u64, Job)>(limits.connections);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (done, done_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..limits.workers {
        let (jobs_rx, done, wake) = (jobs_rx.clone(), done.clone(), wake.try_clone()?);
        threads.push(
            std::thread::Builder::new()
                .name(format!("{name}-w{i}"))
                .spawn(move || work(&jobs_rx, &done, &wake))?,
        );
    }
    let mut lp = Loop {
        name,
        listener,
        wake_rx,
        limits,
        conns: Vec::with_capacity(limits.connections),
        next_id: 0,
        jobs,
        done: done_rx,
    };
    let st = stop.clone();
    threads.push(
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || lp.run(&st, &route))?,
    );
    Ok(Server {
        stop,
        wake,
        threads,
    })
}

/// A worker: runs jobs until the server's thread goes; each answer goes back to it, woken.
fn work(jobs: &Mutex<Receiver<(u64, Job)>>, done: &Sender<(u64, Response)>, wake: &UnixStream) {
    loop {
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((id, job)) = next else { return };
        if done.send((id, job())).is_err() {
            return;
        }
        // A full pipe already holds a wake-up.
        let _ = (&*wake).write(&[1]);
    }
}

enum Stage {
    /// Reading the request head (at most `head_bytes`).
    Head(Vec<u8>),
    /// A worker has the request.
    Waiting,
    /// Sending the answer; this much of it sent.
    Writing(Vec<u8>, usize),
    /// Answer sent, our side shut: dropping what the client still sends; this much so far.
    Lingering(usize),
    Closed,
}

struct Conn {
    stream: TcpStream,
    id: u64,
    /// When the stage's clock started: accept (for the head), or the answer ready.
    since: Instant,
    stage: Stage,
    /// The request is a HEAD: its answer goes without the body.
    head_only: bool,
}

impl Conn {
    fn deadline(&self, l: &Limits) -> Option<Instant> {
        match self.stage {
            Stage::Head(_) => Some(self.since + l.head_timeout),
            Stage::Writing(..) => Some(self.since + l.write_timeout),
            Stage::Lingering(_) => Some(self.since + LINGER),
            Stage::Waiting | Stage::Closed => None,
        }
    }

    fn interest(&self) -> PollFlags {
        match self.stage {
            Stage::Head(_) | Stage::Lingering(_) => PollFlags::POLLIN,
            Stage::Writing(..) => PollFlags::POLLOUT,
            Stage::Waiting | Stage::Closed => PollFlags::empty(),
        }
    }

    /// Starts sending `r` (and sends what the socket takes now).
    fn answer(&mut self, r: &Response) {
        self.since = Instant::now();
        let mut out = encode(r);
        if self.head_only {
            out.truncate(out.len() - r.body.len());
        }
        self.stage = Stage::Writing(out, 0);
        self.write();
    }

    /// Reads what the head stage can; returns a complete head (once).
    fn read_head(&mut self, l: &Limits) -> Option<Head> {
        let Stage::Head(buf) = &mut self.stage else {
            return None;
        };
        let mut chunk = [0u8; 2048];
        loop {
            let room = (l.head_bytes - buf.len()).min(chunk.len());
            if room == 0 {
                break;
            }
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => {
                    self.stage = Stage::Closed;
                    return None;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.stage = Stage::Closed;
                    return None;
                }
            }
        }
        match parse_head(buf, l) {
            Ok(head) => head,
            Err(refusal) => {
                self.answer(&refusal);
                None
            }
        }
    }

    fn write(&mut self) {
        let Stage::Writing(out, sent) = &mut self.stage else {
            return;
        };
        while *sent < out.len() {
            match self.stream.write(&out[*sent..]) {
                Ok(n) => *sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stage = Stage::Closed;
                    return;
                }
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.since = Instant::now();
        self.stage = Stage::Lingering(0);
        self.linger();
    }

    fn linger(&mut self) {
        let Stage::Lingering(dropped) = &mut self.stage else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) if n > 0 && *dropped + n <= LINGER_BYTES => *dropped += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The end, an error, or more than we read for nothing.
                _ => {
                    self.stage = Stage::Closed;
                    return;
                }
            }
        }
    }
}

/// The server's thread: its sockets and its ends of the workers' queues.
struct Loop {
    name: &'static str,
    listener: TcpListener,
    wake_rx: UnixStream,
    limits: Limits,
    conns: Vec<Conn>,
    next_id: u64,
    jobs: SyncSender<(u64, Job)>,
    done: Receiver<(u64, Response)>,
}

impl Loop {
    fn run(&mut self, stop: &AtomicBool, route: &dyn Fn(&Head) -> Reply) {
        // What poll said of the listener, the wake-up pipe, then of `polled`'s conns (those
        // not waiting on a worker: one of those whose client went would wake poll at once,
        // again and again, until its answer came).
        let mut ready: Vec<PollFlags> = Vec::with_capacity(self.limits.connections + 2);
        let mut polled: Vec<usize> = Vec::with_capacity(self.limits.connections);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let timeout = self
                .conns
                .iter()
                .filter_map(|c| c.deadline(&self.limits))
                .min()
                .map(|d| d.saturating_duration_since(now));
            ready.clear();
            polled.clear();
            {
                let mut fds = Vec::with_capacity(self.conns.len() + 2);
                fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                fds.push(PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN));
                for (i, c) in self.conns.iter().enumerate() {
                    if !c.interest().is_empty() {
                        polled.push(i);
                        fds.push(PollFd::new(c.stream.as_fd(), c.interest()));
                    }
                }
                // Rounded up to whole milliseconds: a deadline is never polled for early
                // and then spun on.
                let ms = timeout.map(|t| t.as_micros().div_ceil(1000));
                let pt = ms.map_or(PollTimeout::NONE, |ms| {
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                });
                match poll(&mut fds, pt) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!("{}: poll: {e}; the server stops", self.name);
                        return;
                    }
                }
                ready.extend(
                    fds.iter()
                        .map(|f| f.revents().unwrap_or(PollFlags::empty())),
                );
            }
            if !ready[1].is_empty() {
                let mut sink = [0u8; 64];
                while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            }
            self.take_answers();
            for (&i, r) in polled.iter().zip(&ready[2..]) {
                if r.is_empty() {
                    continue;
                }
                let c = &mut self.conns[i];
                match c.stage {
                    Stage::Head(_) => {
                        if let Some(head) = c.read_head(&self.limits) {
                            self.dispatch(i, &head, route);
                        }
                    }
                    Stage::Writing(..) => c.write(),
                    Stage::Lingering(_) => c.linger(),
                    Stage::Waiting | Stage::Closed => {}
                }
            }
            if !ready[0].is_empty() {
                self.accept(route);
            }
            let now = Instant::now();
            for c in &mut self.conns {
                if c.deadline(&self.limits).is_some_and(|d| d <= now) {
                    if let Stage::Head(_) = c.stage {
                        // Best effort: one write, which a socket's empty buffer takes.
                        let _ = c.stream.write(&encode(&Response::error(
                            408,
                            "the request head did not arrive in time",
                        )));
                    }
                    c.stage = Stage::Closed;
                }
            }
            self.conns.retain(|c| !matches!(c.stage, Stage::Closed));
        }
    }

    /// Hands answers from the workers to their connections.
    fn take_answers(&mut self) {
        loop {
            match self.done.try_recv() {
                Ok((id, r)) => {
                    if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
                        c.answer(&r);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Routes conn `i`'s complete head.
    fn dispatch(&mut self, i: usize, head: &Head, route: &dyn Fn(&Head) -> Reply) {
        let c = &mut self.conns[i];
        c.head_only = head.method == "HEAD";
        match route(head) {
            Reply::Now(r) => c.answer(&r),
            Reply::Later(job) => match self.jobs.try_send((c.id, job)) {
                Ok(()) => c.stage = Stage::Waiting,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    c.answer(&Response::error(503, "the server is busy"))
                }
            },
        }
    }

    /// Takes every pending connection: each gets a slot (when all are taken, the one of the
    /// connection whose stage began first, unless it waits on a worker) or is closed at once.
    fn accept(&mut self, route: &dyn Fn(&Head) -> Reply) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: all taken. Other errors (EMFILE, ECONNABORTED...): the next
                // poll tells again.
                Err(_) => return,
            };
            self.conns.retain(|c| !matches!(c.stage, Stage::Closed));
            if self.conns.len() >= self.limits.connections {
                let oldest = self
                    .conns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !matches!(c.stage, Stage::Waiting))
                    .min_by_key(|(_, c)| c.since)
                    .map(|(i, _)| i);
                match oldest {
                    Some(i) => drop(self.conns.swap_remove(i)),
                    None => {
                        drop(stream);
                        continue;
                    }
                }
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            self.next_id += 1;
            self.conns.push(Conn {
                stream,
                id: self.next_id,
                since: Instant::now(),
                stage: Stage::Head(Vec::new()),
                head_only: false,
            });
            // Its request is often there already: read it now, before others can come.
            let i = self.conns.len() - 1;
            if let Some(head) = self.conns[i].read_head(&self.limits) {
                self.dispatch(i, &head, route);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(raw: &[u8]) -> u16 {
        match parse_head(raw, &Limits::DEFAULT) {
            Err(r) => r.status,
            Ok(_) => panic!("accepted: {:.80?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_complete_head_is_parsed_and_a_partial_one_waits() {
        let raw = b"GET /flows?limit=3 HTTP/1.1\r\nHost: x\r\naccept: a/b\r\nAccept: c\r\n\r\n";
        let h = parse_head(raw, &Limits::DEFAULT).unwrap().unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str()),
            ("GET", "/flows?limit=3")
        );
        let accept: Vec<&[u8]> = h.values("ACCEPT").collect();
        assert_eq!(accept, [&b"a/b"[..], b"c"]);
        for cut in 1..raw.len() {
            assert!(parse_head(&raw[..cut], &Limits::DEFAULT).unwrap().is_none());
        }
    }

    #[test]
    fn a_head_over_the_limit_gets_431() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        while raw.len() < Limits::DEFAULT.head_bytes {
            raw.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        raw.truncate(Limits::DEFAULT.head_bytes);
        assert_eq!(refusal(&raw), 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(refusal(&many), 431);
    }

    #[test]
    fn a_long_target_gets_414_before_its_line_ends() {
        let mut raw = b"GET /".to_vec();
        raw.resize(Limits::DEFAULT.target_bytes + REQUEST_LINE_EXTRA + 1, b'a');
        assert_eq!(refusal(&raw), 414);
        let mut whole = b"GET /".to_vec();
        whole.resize("GET ".len() + Limits::DEFAULT.target_bytes + 1, b'a');
        whole.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(refusal(&whole), 414);
    }

    #[test]
    fn garbage_gets_400() {
        for raw in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS client hello
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(refusal(raw), 400, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// A server on an ephemeral loopback port: `/slow` is answered by a worker after
    /// 300 ms, anything else at once with its target.
    fn server(limits: Limits) -> (Server, SocketAddr) {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let s = start(l, "sy-test", limits, |h: &Head| {
            let target = h.target.clone();
            if target == "/slow" {
                Reply::Later(Box::new(|| {
                    std::thread::sleep(Duration::from_millis(300));
                    Response::error(200, "slow")
                }))
            } else {
                Reply::Now(Response::error(200, &target))
            }
        })
        .unwrap();
        (s, addr)
    }

    /// Sends `raw`, then reads to the end (at most 3 s): the text read, or the error.
    fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = s.write_all(raw);
        let mut out = Vec::new();
        match s.read_to_end(&mut out) {
            Ok(_) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) => format!("{}{e}", String::from_utf8_lossy(&out)),
        }
    }

    fn status(text: &str) -> &str {
        text.get(9..12).unwrap_or(text)
    }

    #[test]
    fn answers_close_the_connection_and_refusals_reach_the_client() {
        let (_s, addr) = server(Limits::DEFAULT);
        let ok = exchange(addr, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Connection: close\r\n") && ok.ends_with("\"/hello\"\n}\n"));
        let slow = exchange(addr, b"GET /slow HTTP/1.1\r\n\r\n");
        assert!(slow.starts_with("HTTP/1.1 200 OK\r\n"), "{slow}");
        assert_eq!(status(&exchange(addr, b"BLAH\x01\r\n\r\n")), "400");
        // 64 MB of headers: refused after the first 8 KiB, the rest never read.
        let big = exchange(
            addr,
            &[b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 1 << 20]].concat(),
        );
        assert!(status(&big) == "431" || big.contains("reset"), "{big}");
    }

    #[test]
    fn a_slow_head_is_cut_off_and_holds_nobody_up() {
        let limits = Limits {
            head_timeout: Duration::from_millis(400),
            ..Limits::DEFAULT
        };
        let (_s, addr) = server(limits);
        let t = Instant::now();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /sta").unwrap();
        let mut idle = TcpStream::connect(addr).unwrap();
        let fast = Instant::now();
        assert_eq!(status(&exchange(addr, b"GET / HTTP/1.1\r\n\r\n")), "200");
        assert!(
            fast.elapsed() < Duration::from_millis(100),
            "{:?}",
            fast.elapsed()
        );
        for s in [&mut slow, &mut idle] {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            assert_eq!(status(&out), "408", "{out}");
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }

    #[test]
    fn beyond_the_connection_limit_the_oldest_unfinished_head_goes() {
        let limits = Limits {
            connections: 4,
            ..Limits::DEFAULT
        };
        let (_s, addr) = server(limits);
        let mut idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        // A fifth connection is served; the oldest idle one made room for it.
        assert_eq!(status(&exchange(addr, b"GET / HTTP/1.1\r\n\r\n")), "200");
        idle[0]
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut b = [0u8; 16];
        assert!(matches!(idle[0].read(&mut b), Ok(0) | Err(_)));
        // The others still have their slot: one sends its request now and is answered.
        idle[3].write_all(b"GET /late HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        idle[3].read_to_string(&mut out).unwrap();
        assert_eq!(status(&out), "200", "{out}");
    }

    #[test]
    fn when_every_connection_waits_on_a_worker_a_new_one_is_closed_at_once() {
        let limits = Limits {
            connections: 2,
            workers: 1,
            ..Limits::DEFAULT
        };
        let (_s, addr) = server(limits);
        let waiting: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || exchange(addr, b"GET /slow HTTP/1.1\r\n\r\n")))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let mut refused = TcpStream::connect(addr).unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut b = [0u8; 16];
        assert!(matches!(refused.read(&mut b), Ok(0) | Err(_)));
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        // Both waiting ones are answered, one after the other by the single worker.
        for w in waiting {
            assert_eq!(status(&w.join().unwrap()), "200");
        }
    }

    #[test]
    fn extra_headers_are_sent_unless_they_hold_control_characters() {
        let r = Response::text(302, "text/plain", "moved\n".into())
            .header("Location", "http://a.test/x?y=1".into())
            .header("X-Evil", "a\r\nSet-Cookie: x=1".into())
            .header("X-SY-HMAC", "00ff".into());
        let out = String::from_utf8(encode(&r)).unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 302 Found\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\
             Connection: close\r\nLocation: http://a.test/x?y=1\r\nX-SY-HMAC: 00ff\r\n\r\n\
             moved\n"
        );
    }

    #[test]
    fn a_head_request_gets_the_head_alone() {
        let (_s, addr) = server(Limits::DEFAULT);
        let out = exchange(addr, b"HEAD /hello HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
        let len: usize = out
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(len > 0, "the length of the body a GET would get");
    }

    #[test]
    fn dropping_the_server_stops_it() {
        let (s, addr) = server(Limits::DEFAULT);
        let _idle = TcpStream::connect(addr).unwrap();
        let t = Instant::now();
        drop(s);
        assert!(t.elapsed() < Duration::from_millis(500));
        assert!(TcpStream::connect(addr).is_err());
    }
}
