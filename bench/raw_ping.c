/* raw_ping: the kernel's floor under a heartbeat round (issue 14, target 3).
 *
 * One process, two sides. A child opens N loopback TCP connections to the
 * parent and answers every 6-byte WebSocket ping (unmasked, 4-byte payload)
 * with a 10-byte masked pong, as a browser would. The parent does only what
 * any server must do per connection and per round: one send() of a
 * pre-built ping frame and, when its socket turns readable, one recv() of
 * the pong (level-triggered epoll, no other bookkeeping). Pings leave in
 * rounded slots, as duplex's heartbeat does: the interval is cut into
 * --slots slots and connection i pings in slot i mod slots, so each wake-up
 * sends a batch. The parent's own CPU time (getrusage: user + system; on
 * loopback its send() also runs the TCP receive path of the child's socket)
 * over R rounds divided by the pongs read is what a ping round costs a
 * server that does nothing else; compare bench/idle_cpu.sh's us_per_ping.
 * The send loops and the receive handling are also timed on their own with
 * the thread's CPU clock.
 *
 * --uring send|both (built where liburing is, Debian: liburing-dev) asks
 * what batching system calls would save: a slot's pings leave as one
 * io_uring submission instead of one send() each, and with `both` the
 * pongs of one epoll_wait are read by one submission too. The kernel's
 * TCP work per connection stays; the system call entries (dear in this VM)
 * go.
 *
 * usage: raw_ping [--conns N] [--interval MS] [--slots K] [--rounds R]
 *                 [--port P] [--uring send|both]
 *   defaults: 10000 connections, 2000 ms, 64 slots, 5 rounds (after one
 *   round of warm-up), port 19190. Loopback only; not a test. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raw_common.h"

#ifdef DX_HAVE_LIBURING
#include <liburing.h>
#endif

static const char usage[] =
    "usage: raw_ping [--conns N] [--interval MS] [--slots K] [--rounds R] [--port P]"
    " [--uring send|both]";

enum { RING_ENTRIES = 512, MAX_EVENTS = 256 };

#ifdef DX_HAVE_LIBURING
static struct io_uring ring;

/* Submits what is queued, waits for all `n` completions and returns the
 * bytes they moved; -1 if any failed or came short of `want` bytes each
 * (0: any positive count will do). */
static long long ring_complete(unsigned n, int want) {
  long long bytes = 0;
  int bad = 0;
  io_uring_submit_and_wait(&ring, n);
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&ring, head, cqe) {
    if (cqe->res <= 0 || (want && cqe->res != want)) bad = 1;
    bytes += cqe->res > 0 ? cqe->res : 0;
    seen++;
  }
  io_uring_cq_advance(&ring, seen);
  return bad || seen != n ? -1 : bytes;
}
#endif

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double rusage_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void raise_nofile(int n) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  if (rl.rlim_cur < (rlim_t)n) {
    rl.rlim_cur = rl.rlim_max < (rlim_t)n ? rl.rlim_max : (rlim_t)n;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* The child: N connections that answer pings until the parent hangs up. */
static void client(int port, int conns) {
  int ep = epoll_create1(0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  for (int i = 0; i < conns; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
      perror("raw_ping client: connect");
      exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  int open = conns;
  struct epoll_event evs[256];
  while (open > 0) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      uint8_t buf[64];
      ssize_t r = recv(evs[i].data.fd, buf, sizeof buf, 0);
      if (r <= 0) {
        close(evs[i].data.fd);
        open--;
        continue;
      }
      /* Every 6 bytes is one ping (loopback delivers them whole). */
      for (ssize_t off = 0; off + 6 <= r; off += 6) {
        uint8_t pong[10] = {0x8A, 0x84, 1, 2, 3, 4};
        for (int k = 0; k < 4; k++) pong[6 + k] = buf[off + 2 + k] ^ pong[2 + k];
        if (send(evs[i].data.fd, pong, sizeof pong, MSG_NOSIGNAL) != (ssize_t)sizeof pong) {
          perror("raw_ping client: send");
          exit(1);
        }
      }
    }
  }
  exit(0);
}

int main(int argc, char **argv) {
  int conns = 10000, interval = 2000, slots = 64, rounds = 5, port = 19190;
  int uring_send = 0, uring_recv = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--uring") && i + 1 < argc) {
      const char *m = argv[++i];
      uring_send = !strcmp(m, "send") || !strcmp(m, "both");
      uring_recv = !strcmp(m, "both");
      if (!uring_send) {
        fprintf(stderr, "%s\n", usage);
        return 2;
      }
#ifndef DX_HAVE_LIBURING
      fprintf(stderr, "raw_ping: built without liburing (Debian: liburing-dev)\n");
      return 2;
#endif
      continue;
    }
    int *v = !strcmp(argv[i], "--conns")      ? &conns
             : !strcmp(argv[i], "--interval") ? &interval
             : !strcmp(argv[i], "--slots")    ? &slots
             : !strcmp(argv[i], "--rounds")   ? &rounds
             : !strcmp(argv[i], "--port")     ? &port
                                              : NULL;
    if (!v || i + 1 == argc) {
      fprintf(stderr, "%s\n", usage);
      return 2;
    }
    *v = atoi(argv[++i]);
  }
  if (conns < 1 || interval < 1 || slots < 1 || rounds < 1) {
    fprintf(stderr, "%s\n", usage);
    return 2;
  }
#ifdef DX_HAVE_LIBURING
  if (uring_send && io_uring_queue_init(RING_ENTRIES, &ring, 0)) {
    fprintf(stderr, "raw_ping: io_uring is not available here\n");
    return 1;
  }
#endif
  raise_nofile(conns + 64);
  int lfd = raw_listen(port, "127.0.0.1", usage);
  pid_t kid = fork();
  if (kid == 0) {
    close(lfd);
    client(port, conns);
  }
  int *fds = malloc(sizeof *fds * (size_t)conns);
  int ep = epoll_create1(0);
  for (int got = 0; got < conns;) {
    int fd = raw_accept(lfd);
    if (fd < 0) {
      usleep(1000);
      continue;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    fds[got++] = fd;
  }
  struct epoll_event evs[MAX_EVENTS];
  double cpu0 = 0;
  uint64_t send_ns = 0, recv_ns = 0, pongs = 0;
  for (int round = 0; round <= rounds; round++) {
    if (round == 1) { /* round 0 warms up */
      cpu0 = rusage_us();
      send_ns = recv_ns = pongs = 0;
    }
    for (int s = 0; s < slots; s++) {
      uint64_t end = clock_ns(CLOCK_MONOTONIC) + (uint64_t)interval * 1000000u / (uint64_t)slots;
      uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
      /* The frame is the same for every connection (a fixed payload). */
      static const uint8_t ping[6] = {0x89, 0x04, 'b', 'e', 'a', 't'};
#ifdef DX_HAVE_LIBURING
      if (uring_send) {
        unsigned queued = 0;
        for (int i = s; i < conns; i += slots) {
          struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
          if (!sqe) { /* the ring is full: hand it what it holds */
            io_uring_submit(&ring);
            sqe = io_uring_get_sqe(&ring);
          }
          io_uring_prep_send(sqe, fds[i], ping, sizeof ping, MSG_NOSIGNAL);
          queued++;
        }
        if (queued && ring_complete(queued, (int)sizeof ping) < 0) {
          fprintf(stderr, "raw_ping: an io_uring send failed\n");
          return 1;
        }
      } else
#endif
      for (int i = s; i < conns; i += slots)
        if (send(fds[i], ping, sizeof ping, MSG_NOSIGNAL) != (ssize_t)sizeof ping) {
          perror("raw_ping: send");
          return 1;
        }
      send_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
      for (;;) {
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= end) break;
        int n = epoll_wait(ep, evs, MAX_EVENTS, (int)((end - now + 999999) / 1000000));
        t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
#ifdef DX_HAVE_LIBURING
        if (uring_recv && n > 0) {
          static uint8_t bufs[MAX_EVENTS][64];
          for (int i = 0; i < n; i++)
            io_uring_prep_recv(io_uring_get_sqe(&ring), evs[i].data.fd, bufs[i], sizeof bufs[i], 0);
          long long got = ring_complete((unsigned)n, 0);
          if (got < 0) {
            fprintf(stderr, "raw_ping: a connection ended\n");
            return 1;
          }
          pongs += (uint64_t)got / 10;
          n = 0;
        }
#endif
        for (int i = 0; i < n; i++) {
          uint8_t buf[64];
          ssize_t r = recv(evs[i].data.fd, buf, sizeof buf, 0);
          if (r <= 0) {
            fprintf(stderr, "raw_ping: a connection ended\n");
            return 1;
          }
          pongs += (uint64_t)r / 10;
        }
        recv_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
      }
    }
  }
  double cpu = rusage_us() - cpu0;
  for (int i = 0; i < conns; i++) close(fds[i]);
  waitpid(kid, NULL, 0);
  printf("raw_ping uring=%s conns=%d interval_ms=%d slots=%d rounds=%d pongs=%llu "
         "us_per_ping=%.2f send_us=%.2f recv_us=%.2f\n",
         uring_recv ? "both" : uring_send ? "send" : "none", conns, interval, slots, rounds,
         (unsigned long long)pongs,
         pongs ? cpu / (double)pongs : 0.0, pongs ? (double)send_ns / 1e3 / (double)pongs : 0.0,
         pongs ? (double)recv_ns / 1e3 / (double)pongs : 0.0);
  return pongs == (uint64_t)conns * (uint64_t)rounds ? 0 : 1;
}
