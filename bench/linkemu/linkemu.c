/*
 * cs-linkemu: a user-space network link emulator (TCP or UDP relay).
 *
 * Clients connect to --listen; every byte (TCP) or datagram (UDP) they send
 * is relayed to --connect through the "up" shaper, and every reply through
 * the "down" shaper. A shaper models one direction of a bottleneck link:
 *
 *   source --> [bounded FIFO queue] --> serializer at --rate --> one-way delay --> sink
 *
 * Invariants:
 * - One shaper per direction, shared by all connections or flows, so they
 *   share the rate as on a real bottleneck link. Segments leave in FIFO order:
 *   a segment enqueued at t departs at max(t, previous departure) + size/rate
 *   and arrives one-way delay (RTT/2) later, so arrival times never decrease
 *   and one list per shaper holds everything still "on the link".
 * - The queue ("backlog") is the bytes not yet fully serialized. UDP: a
 *   datagram that would push the backlog over --queue is tail-dropped. TCP:
 *   the relay stops reading from its sources while the queue is full, so the
 *   senders' kernels apply back-pressure (nothing is ever lost). Connections
 *   are admitted into the queue one segment at a time in round-robin order.
 * - TCP handshake: a client's data is held until one RTT after accept (when
 *   its SYN-ACK would have arrived) and the server's until RTT/2 after accept
 *   (when the SYN would have reached it), so a fresh connection's first
 *   response takes 2 RTT as on a real path.
 * - Single thread, one epoll loop, edge-triggered readiness kept in flags;
 *   event handlers only record readiness, the work phase does all I/O, so a
 *   connection is never freed while an event in the same batch refers to it.
 *   A torn-down connection stays allocated (as a zombie) until its last
 *   segment leaves the shapers.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>

#define MSS            1448            /* TCP payload per emulated segment */
#define UDP_MAX        65536           /* largest datagram */
#define UDP_IDLE_NS    (60 * NS_PER_S) /* a UDP flow with no traffic this long is closed */
#define UDP_MAX_FLOWS  1024
#define UDP_BATCH      256 /* datagrams read per socket per loop turn */
#define DEFAULT_QUEUE  (64 * 1024)
#define CONN_EXTRA_BUF (64 * 1024)
#define NS_PER_S       ((int64_t)1000000000)
#define NS_PER_MS      ((int64_t)1000000)

enum { UP = 0, DOWN = 1 };
enum { SEG_DATA, SEG_FIN, SEG_RST };
enum { EP_LISTEN, EP_TIMER, EP_SIGNAL, EP_CONN, EP_FLOW };

typedef struct epref {
    int type;
    void *obj;
    int side; /* EP_CONN: 0 client socket, 1 server socket */
} epref;

struct conn;
struct flow;

typedef struct seg {
    struct seg *next;
    struct conn *conn; /* TCP owner */
    struct flow *flow; /* UDP owner */
    int64_t depart, arrive;
    uint32_t len, off, wire; /* wire = len + overhead: what the link carries */
    uint8_t kind, lost;
    uint8_t data[];
} seg;

typedef struct shaper {
    const char *name;
    int64_t rate;  /* bit/s, 0 = unlimited */
    int64_t delay; /* ns, one way */
    int64_t limit; /* bytes */
    double loss;   /* probability, UDP only */
    uint64_t rng;  /* loss generator: one per direction, so each is reproducible */
    int64_t overhead;
    int64_t busy_until;
    seg *head, *tail; /* every segment not yet arrived, in FIFO order */
    seg *qcur;        /* first segment not yet fully serialized */
    int64_t backlog;  /* bytes from qcur on */
    uint64_t in_bytes, in_pkts, out_bytes, out_pkts;
    uint64_t drop_queue, drop_loss, drop_send;
    int64_t max_backlog;
} shaper;

typedef struct half {         /* one direction of a TCP connection */
    seg *out_head, *out_tail; /* arrived, not yet written to the sink */
    int64_t inlink;           /* bytes of this half inside the shaper */
    int64_t outbytes;         /* bytes waiting in out list */
    int64_t not_before;       /* do not read the source before this time */
    bool src_eof;             /* FIN or RST read from the source */
    bool fin_done;            /* FIN delivered: shutdown(sink, SHUT_WR) done */
    uint64_t served;          /* round-robin stamp of the last read */
} half;

typedef struct conn {
    struct conn *prev, *next;
    uint64_t id;
    int fd[2]; /* [0] client, [1] server; half d reads fd[d], writes fd[1 - d] */
    bool rd[2], wr[2];
    bool connected, failed, dead;
    int refs; /* segments inside the shapers */
    half h[2];
    epref ep[2];
} conn;

typedef struct flow { /* one UDP client address */
    struct flow *prev, *next;
    struct sockaddr_storage addr;
    socklen_t alen;
    int fd; /* connected to the upstream */
    bool rd, dead;
    int refs;
    int64_t last;
    epref ep;
} flow;

typedef struct opts {
    const char *listen, *connect, *port_file;
    bool udp, stats;
    int64_t rate, rtt, queue, overhead;
    double loss;
    uint64_t seed;
    bool seeded, queue_set;
} opts;

static struct {
    opts o;
    int epfd, lfd, tfd, sfd;
    struct sockaddr_storage up_addr;
    socklen_t up_alen;
    shaper sh[2];
    conn *conns;
    flow *flows;
    int nconns, nzombies, nflows;
    uint64_t conns_total, conn_fail, resets, flows_total, next_id, serve_seq;
    bool lrd;
    bool stop;
    int64_t start, last_sweep;
    uint8_t buf[UDP_MAX];
} g;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *state) /* splitmix64 */
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

static void die(const char *what)
{
    fprintf(stderr, "cs-linkemu: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---------------------------------------------------------------- arguments */

static void usage(FILE *f)
{
    fprintf(f, "usage: cs-linkemu --listen HOST:PORT --connect HOST:PORT [options]\n"
               "\n"
               "Relay TCP connections (or UDP datagrams with --udp) from --listen to --connect\n"
               "through an emulated bottleneck link: each direction has its own FIFO queue,\n"
               "serializer at --rate shared by all connections, and a one-way delay of RTT/2.\n"
               "\n"
               "  --listen HOST:PORT   address to accept on (PORT 0 picks a free port)\n"
               "  --connect HOST:PORT  upstream server\n"
               "  --udp                relay UDP datagrams per client address instead of TCP\n"
               "  --rate R             link rate per direction: bit, kbit, mbit, gbit (SI, like\n"
               "                       tc), e.g. 4mbit; 0 = unlimited (default)\n"
               "  --rtt T              round-trip delay: us, ms or s, e.g. 50ms (default 0)\n"
               "  --loss P             random loss per direction in percent, e.g. 1%% (UDP only)\n"
               "  --queue BYTES        bottleneck queue per direction; suffix k or m (x1024);\n"
               "                       default max(64k, 1 BDP)\n"
               "  --overhead BYTES     link bytes added per segment/datagram (headers; default 0)\n"
               "  --seed N             seed for the loss generator (default: time-based)\n"
               "  --port-file F        write the listening port to F once ready\n"
               "  --stats              also print the stats JSON line on exit\n"
               "  --help               this text\n"
               "\n"
               "SIGUSR1 prints one JSON stats line on stdout; SIGTERM/SIGINT exit cleanly.\n");
}

static void bad_arg(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "cs-linkemu: bad %s '%s': %s\n", opt, val, why);
    fprintf(stderr, "try 'cs-linkemu --help'\n");
    exit(2);
}

/* Parse a non-negative decimal number followed by a unit from units[] (NULL
 * terminated, matched case-insensitively) with the matching multiplier. */
static double parse_unit(const char *opt, const char *s, const char *const *units,
                         const double *mult, const char *why)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0)
        bad_arg(opt, s, why);
    if (*end == '\0') {
        if (v == 0)
            return 0;
        bad_arg(opt, s, why);
    }
    for (int i = 0; units[i]; i++)
        if (strcasecmp(end, units[i]) == 0)
            return v * mult[i];
    bad_arg(opt, s, why);
    return 0;
}

static int64_t parse_rate(const char *s)
{
    static const char *const u[] = {"bit", "kbit", "mbit", "gbit", NULL};
    static const double m[] = {1, 1e3, 1e6, 1e9};
    double v = parse_unit("--rate", s, u, m, "expected a number with unit bit, kbit, mbit or gbit");
    if (v > 1e12 || (v > 0 && v < 8))
        bad_arg("--rate", s, "must be 0 (unlimited) or between 8bit and 1000gbit");
    return (int64_t)v;
}

static int64_t parse_time(const char *s)
{
    static const char *const u[] = {"us", "ms", "s", NULL};
    static const double m[] = {1e3, 1e6, 1e9};
    double v = parse_unit("--rtt", s, u, m, "expected a number with unit us, ms or s");
    if (v > 60e9)
        bad_arg("--rtt", s, "must be at most 60s");
    return (int64_t)v;
}

static int64_t parse_bytes(const char *opt, const char *s, int64_t max)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0)
        bad_arg(opt, s, "expected a byte count, optionally with suffix k or m (x1024)");
    if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kb") == 0 || strcasecmp(end, "kib") == 0)
        v *= 1024;
    else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mb") == 0 || strcasecmp(end, "mib") == 0)
        v *= 1024 * 1024;
    else if (*end)
        bad_arg(opt, s, "expected a byte count, optionally with suffix k or m (x1024)");
    if (v > max)
        bad_arg(opt, s, "too large");
    return v;
}

static double parse_loss(const char *s)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || (*end && strcmp(end, "%") != 0) || v < 0 || v > 100)
        bad_arg("--loss", s, "expected a percentage between 0 and 100, e.g. 1%");
    return v / 100.0;
}

/* Resolve "host:port" or "[v6]:port". */
static void parse_addr(const char *opt, const char *s, bool passive, int socktype,
                       struct sockaddr_storage *out, socklen_t *outlen)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1])
        bad_arg(opt, s, "expected HOST:PORT");
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        bad_arg(opt, s, "host name too long");
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || (!passive && port == 0))
        bad_arg(opt, s, "bad port");
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = socktype;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int r = getaddrinfo(host, colon + 1, &hints, &res);
    if (r != 0 || !res)
        bad_arg(opt, s, r ? gai_strerror(r) : "no address");
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {{"listen", required_argument, NULL, 'l'},
                                       {"connect", required_argument, NULL, 'c'},
                                       {"udp", no_argument, NULL, 'u'},
                                       {"rate", required_argument, NULL, 'r'},
                                       {"rtt", required_argument, NULL, 't'},
                                       {"loss", required_argument, NULL, 'L'},
                                       {"queue", required_argument, NULL, 'q'},
                                       {"overhead", required_argument, NULL, 'o'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"port-file", required_argument, NULL, 'p'},
                                       {"stats", no_argument, NULL, 'S'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    opts *o = &g.o;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->listen = optarg;
            break;
        case 'c':
            o->connect = optarg;
            break;
        case 'u':
            o->udp = true;
            break;
        case 'r':
            o->rate = parse_rate(optarg);
            break;
        case 't':
            o->rtt = parse_time(optarg);
            break;
        case 'L':
            o->loss = parse_loss(optarg);
            break;
        case 'q':
            o->queue = parse_bytes("--queue", optarg, 1LL << 32);
            o->queue_set = true;
            if (o->queue < 1500)
                bad_arg("--queue", optarg, "must be at least 1500 bytes");
            break;
        case 'o':
            o->overhead = parse_bytes("--overhead", optarg, 65536);
            break;
        case 's': {
            char *end = NULL;
            errno = 0;
            o->seed = strtoull(optarg, &end, 0);
            if (end == optarg || *end || errno)
                bad_arg("--seed", optarg, "expected an integer");
            o->seeded = true;
            break;
        }
        case 'p':
            o->port_file = optarg;
            break;
        case 'S':
            o->stats = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            if (optopt)
                fprintf(stderr, "cs-linkemu: option needs a value or is unknown: %s\n",
                        argv[optind - 1]);
            else
                fprintf(stderr, "cs-linkemu: unknown option %s\n", argv[optind - 1]);
            fprintf(stderr, "try 'cs-linkemu --help'\n");
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cs-linkemu: unexpected argument '%s'\ntry 'cs-linkemu --help'\n",
                argv[optind]);
        exit(2);
    }
    if (!o->listen || !o->connect) {
        fprintf(stderr, "cs-linkemu: --listen and --connect are required\n"
                        "try 'cs-linkemu --help'\n");
        exit(2);
    }
    if (o->loss > 0 && !o->udp) {
        fprintf(stderr, "cs-linkemu: --loss needs --udp: a user-space TCP relay cannot lose "
                        "segments (its TCP peers would never see it); see README.md\n");
        exit(2);
    }
}

/* ---------------------------------------------------------------- shapers */

static int64_t bdp_bytes(void)
{
    return (int64_t)((double)g.o.rate / 8.0 * (double)g.o.rtt / 1e9);
}

static void shaper_init(shaper *s, const char *name, int dir)
{
    s->name = name;
    s->rate = g.o.rate;
    s->delay = dir == UP ? g.o.rtt / 2 : g.o.rtt - g.o.rtt / 2;
    s->limit = g.o.queue;
    s->loss = g.o.loss;
    s->overhead = g.o.overhead;
    s->rng = g.o.seed;
    if (dir == DOWN) {
        uint64_t st = g.o.seed;
        s->rng = rng_next(&st);
    }
}

static bool shaper_room(const shaper *s, int64_t wire)
{
    return s->backlog == 0 || s->backlog + wire <= s->limit;
}

static void shaper_push(shaper *s, seg *sg, int64_t now)
{
    int64_t start = s->busy_until > now ? s->busy_until : now;
    int64_t ser = 0;
    if (sg->kind == SEG_DATA && s->rate > 0)
        ser = ((int64_t)sg->wire * 8 * NS_PER_S + s->rate - 1) / s->rate; /* < 2^63: wire <= 128k */
    sg->depart = start + ser;
    sg->arrive = sg->depart + s->delay;
    if (sg->kind == SEG_DATA)
        s->busy_until = sg->depart;
    sg->next = NULL;
    if (s->tail)
        s->tail->next = sg;
    else
        s->head = sg;
    s->tail = sg;
    if (!s->qcur)
        s->qcur = sg;
    s->backlog += sg->wire;
    if (s->backlog > s->max_backlog)
        s->max_backlog = s->backlog;
    if (sg->kind == SEG_DATA) {
        s->in_bytes += sg->len;
        s->in_pkts++;
    }
}

/* Retire fully serialized segments from the queue accounting. */
static void shaper_drain(shaper *s, int64_t now)
{
    while (s->qcur && s->qcur->depart <= now) {
        s->backlog -= s->qcur->wire;
        s->qcur = s->qcur->next;
    }
}

/* Pop the head if it has arrived by now. */
static seg *shaper_pop(shaper *s, int64_t now)
{
    shaper_drain(s, now);
    seg *sg = s->head;
    if (!sg || sg->arrive > now)
        return NULL;
    s->head = sg->next;
    if (!s->head)
        s->tail = NULL;
    sg->next = NULL;
    return sg;
}

static int64_t shaper_next_event(const shaper *s)
{
    int64_t t = INT64_MAX;
    if (s->head)
        t = s->head->arrive;
    if (s->qcur && s->qcur->depart < t)
        t = s->qcur->depart;
    return t;
}

static seg *seg_new(uint32_t len, int kind)
{
    seg *sg = malloc(sizeof(*sg) + len);
    if (!sg)
        die("malloc");
    memset(sg, 0, sizeof(*sg));
    sg->len = len;
    sg->kind = (uint8_t)kind;
    return sg;
}

/* ---------------------------------------------------------------- epoll */

static void ep_add(int fd, epref *ref, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = ref};
    if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void close_reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

/* ---------------------------------------------------------------- TCP */

static void seg_list_free(seg *s)
{
    while (s) {
        seg *n = s->next;
        free(s);
        s = n;
    }
}

static void conn_unlink(conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        g.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    g.nconns--;
}

/* Tear a connection down: reset both sockets (abort) or close them. The
 * struct lives on as a zombie until its segments have left the shapers. */
static void conn_end(conn *c, bool reset)
{
    if (c->dead)
        return;
    c->dead = true;
    for (int i = 0; i < 2; i++) {
        if (c->fd[i] >= 0) {
            if (reset)
                close_reset(c->fd[i]);
            else
                close(c->fd[i]);
            c->fd[i] = -1;
        }
        seg_list_free(c->h[i].out_head);
        c->h[i].out_head = c->h[i].out_tail = NULL;
    }
    if (reset)
        g.resets++;
    conn_unlink(c);
    if (c->refs == 0)
        free(c);
    else
        g.nzombies++;
}

static void conn_seg_done(conn *c)
{
    if (--c->refs == 0 && c->dead) {
        g.nzombies--;
        free(c);
    }
}

static void accept_all(int64_t now)
{
    for (;;) {
        int fd = accept4(g.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                g.lrd = false;
                return;
            }
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                fprintf(stderr, "cs-linkemu: accept: %s\n", strerror(errno));
                g.lrd = false; /* retried on the next listen event */
                return;
            }
            die("accept");
        }
        int ufd = socket(g.up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ufd < 0) {
            fprintf(stderr, "cs-linkemu: socket: %s\n", strerror(errno));
            close_reset(fd);
            continue;
        }
        set_nodelay(fd);
        set_nodelay(ufd);
        conn *c = calloc(1, sizeof(*c));
        if (!c)
            die("calloc");
        c->id = ++g.next_id;
        c->fd[0] = fd;
        c->fd[1] = ufd;
        /* The client's data may leave once its SYN-ACK would have arrived
         * (1 RTT); the server's once the SYN would have reached it. */
        c->h[UP].not_before = now + g.o.rtt;
        c->h[DOWN].not_before = now + g.sh[UP].delay;
        for (int i = 0; i < 2; i++)
            c->ep[i] = (epref){EP_CONN, c, i};
        if (connect(ufd, (struct sockaddr *)&g.up_addr, g.up_alen) == 0)
            c->connected = true;
        else if (errno != EINPROGRESS)
            c->failed = true;
        ep_add(fd, &c->ep[0], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        ep_add(ufd, &c->ep[1], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        c->next = g.conns;
        if (g.conns)
            g.conns->prev = c;
        g.conns = c;
        g.nconns++;
        g.conns_total++;
    }
}

static void conn_event(conn *c, int side, uint32_t ev)
{
    if (c->dead)
        return;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->rd[side] = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->wr[side] = true;
    if (side == 1 && !c->connected && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
            c->failed = true;
        } else {
            c->connected = true;
        }
    }
}

/* Write what has arrived for half d to its sink. */
static void half_flush(conn *c, int d)
{
    half *h = &c->h[d];
    int sink = 1 - d;
    while (!c->dead && h->out_head) {
        seg *s = h->out_head;
        if (s->kind == SEG_DATA) {
            if (!c->wr[sink] || (sink == 1 && !c->connected))
                return;
            ssize_t n = send(c->fd[sink], s->data + s->off, s->len - s->off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c->wr[sink] = false;
                    return;
                }
                if (errno == EINTR)
                    continue;
                conn_end(c, true); /* the sink is gone: reset the other side too */
                return;
            }
            s->off += (uint32_t)n;
            h->outbytes -= n;
            if (s->off < s->len)
                continue;
        } else if (s->kind == SEG_FIN) {
            if (sink == 1 && !c->connected)
                return;
            shutdown(c->fd[sink], SHUT_WR);
            h->fin_done = true;
        } else {
            conn_end(c, true);
            return;
        }
        h->out_head = s->next;
        if (!h->out_head)
            h->out_tail = NULL;
        free(s);
    }
    if (!c->dead && c->h[UP].fin_done && c->h[DOWN].fin_done)
        conn_end(c, false);
}

static void tcp_deliver(int d, int64_t now)
{
    shaper *sh = &g.sh[d];
    seg *s;
    while ((s = shaper_pop(sh, now))) {
        conn *c = s->conn;
        c->h[d].inlink -= s->wire;
        if (s->kind == SEG_DATA) {
            sh->out_bytes += s->len;
            sh->out_pkts++;
        }
        if (c->dead) {
            free(s);
            conn_seg_done(c);
            continue;
        }
        half *h = &c->h[d];
        if (h->out_tail)
            h->out_tail->next = s;
        else
            h->out_head = s;
        h->out_tail = s;
        h->outbytes += s->len;
        conn_seg_done(c); /* c is alive: refs > 0 or not dead, never freed here */
        half_flush(c, d);
    }
}

static int64_t conn_cap(void)
{
    return g.o.queue + bdp_bytes() + CONN_EXTRA_BUF;
}

/* Whether half d may read its source now; records when a held-back half
 * (TCP handshake) becomes ready in *wake. */
static bool half_can_read(conn *c, int d, int64_t now, int64_t *wake)
{
    half *h = &c->h[d];
    if (c->dead || c->failed || !c->rd[d] || h->src_eof)
        return false;
    if (d == DOWN && !c->connected)
        return false;
    if (now < h->not_before) {
        if (h->not_before < *wake)
            *wake = h->not_before;
        return false;
    }
    /* A slow sink: stop reading so the source's TCP window closes. */
    return h->inlink + h->outbytes < conn_cap();
}

/* Read one segment (at most MSS bytes, or the FIN or RST) from half d's
 * source into its shaper. */
static void half_read(conn *c, int d, int64_t now)
{
    half *h = &c->h[d];
    shaper *sh = &g.sh[d];
    h->served = ++g.serve_seq;
    ssize_t n = recv(c->fd[d], g.buf, MSS, 0);
    seg *s;
    if (n > 0) {
        s = seg_new((uint32_t)n, SEG_DATA);
        memcpy(s->data, g.buf, (size_t)n);
        s->wire = (uint32_t)n + (uint32_t)sh->overhead;
    } else if (n == 0) {
        s = seg_new(0, SEG_FIN);
        h->src_eof = true;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->rd[d] = false;
        return;
    } else if (errno == EINTR) {
        return;
    } else {
        s = seg_new(0, SEG_RST); /* ECONNRESET: reset the far side after the delay */
        h->src_eof = true;
    }
    s->conn = c;
    c->refs++;
    h->inlink += s->wire;
    shaper_push(sh, s, now);
}

/* Fill direction d's queue from the sources, one segment at a time, always
 * from the least recently served connection (round robin among the
 * backlogged ones), until the queue is full or no source has data. */
static void tcp_pump(int d, int64_t now, int64_t *wake)
{
    shaper *sh = &g.sh[d];
    for (;;) {
        shaper_drain(sh, now);
        if (!shaper_room(sh, MSS + sh->overhead))
            return; /* queue full: woken when its head departs */
        conn *best = NULL;
        for (conn *c = g.conns; c; c = c->next)
            if (half_can_read(c, d, now, wake) && (!best || c->h[d].served < best->h[d].served))
                best = c;
        if (!best)
            return;
        half_read(best, d, now);
    }
}

static void tcp_work(int64_t now, int64_t *wake)
{
    if (g.lrd)
        accept_all(now);
    for (conn *c = g.conns, *n; c; c = n) {
        n = c->next;
        if (c->failed) {
            g.conn_fail++;
            conn_end(c, true);
        }
    }
    for (int d = 0; d < 2; d++)
        tcp_deliver(d, now);
    for (conn *c = g.conns, *n; c; c = n) {
        n = c->next;
        half_flush(c, UP);
        if (!c->dead)
            half_flush(c, DOWN);
    }
    for (int d = 0; d < 2; d++)
        tcp_pump(d, now, wake);
}

/* ---------------------------------------------------------------- UDP */

static bool addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

static void set_bufs(int fd)
{
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

static void flow_free_if_done(flow *f)
{
    if (f->dead && f->refs == 0)
        free(f);
}

static void flow_end(flow *f)
{
    if (f->dead)
        return;
    f->dead = true;
    close(f->fd);
    f->fd = -1;
    if (f->prev)
        f->prev->next = f->next;
    else
        g.flows = f->next;
    if (f->next)
        f->next->prev = f->prev;
    g.nflows--;
    flow_free_if_done(f);
}

static flow *flow_get(const struct sockaddr_storage *a, socklen_t alen, int64_t now)
{
    for (flow *f = g.flows; f; f = f->next)
        if (addr_eq(&f->addr, a))
            return f;
    if (g.nflows >= UDP_MAX_FLOWS)
        return NULL;
    int fd = socket(g.up_addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    if (connect(fd, (struct sockaddr *)&g.up_addr, g.up_alen) < 0) {
        close(fd);
        return NULL;
    }
    set_bufs(fd);
    flow *f = calloc(1, sizeof(*f));
    if (!f)
        die("calloc");
    memcpy(&f->addr, a, sizeof(*a));
    f->alen = alen;
    f->fd = fd;
    f->last = now;
    f->ep = (epref){EP_FLOW, f, 0};
    ep_add(fd, &f->ep, EPOLLIN | EPOLLET);
    f->next = g.flows;
    if (g.flows)
        g.flows->prev = f;
    g.flows = f;
    g.nflows++;
    g.flows_total++;
    return f;
}

static void udp_enqueue(int d, flow *f, const uint8_t *data, size_t len, int64_t now)
{
    shaper *sh = &g.sh[d];
    int64_t wire = (int64_t)len + sh->overhead;
    f->last = now;
    shaper_drain(sh, now);
    if (!shaper_room(sh, wire)) {
        sh->in_bytes += len;
        sh->in_pkts++;
        sh->drop_queue++;
        return;
    }
    seg *s = seg_new((uint32_t)len, SEG_DATA);
    memcpy(s->data, data, len);
    s->wire = (uint32_t)wire;
    s->flow = f;
    /* Lost on the wire: the datagram still uses the link, then vanishes. */
    s->lost = sh->loss > 0 && rng_unit(&sh->rng) < sh->loss;
    f->refs++;
    shaper_push(sh, s, now);
}

static void udp_deliver(int d, int64_t now)
{
    shaper *sh = &g.sh[d];
    seg *s;
    while ((s = shaper_pop(sh, now))) {
        flow *f = s->flow;
        f->refs--;
        if (s->lost) {
            sh->drop_loss++;
        } else if (f->dead) {
            sh->drop_send++;
        } else {
            ssize_t n;
            if (d == UP)
                n = send(f->fd, s->data, s->len, MSG_NOSIGNAL);
            else
                n = sendto(g.lfd, s->data, s->len, MSG_NOSIGNAL, (struct sockaddr *)&f->addr,
                           f->alen);
            if (n < 0) {
                sh->drop_send++; /* full socket buffer or ICMP error: a lost datagram */
            } else {
                sh->out_bytes += s->len;
                sh->out_pkts++;
                f->last = now;
            }
        }
        free(s);
        flow_free_if_done(f);
    }
}

static void udp_work(int64_t now)
{
    for (int d = 0; d < 2; d++)
        udp_deliver(d, now);
    for (int i = 0; g.lrd && i < UDP_BATCH; i++) {
        struct sockaddr_storage a;
        socklen_t al = sizeof(a);
        ssize_t n = recvfrom(g.lfd, g.buf, sizeof(g.buf), 0, (struct sockaddr *)&a, &al);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                g.lrd = false;
            else if (errno != EINTR && errno != ECONNREFUSED)
                fprintf(stderr, "cs-linkemu: recvfrom: %s\n", strerror(errno));
            continue;
        }
        flow *f = flow_get(&a, al, now);
        if (!f) {
            g.sh[UP].drop_send++;
            continue;
        }
        udp_enqueue(UP, f, g.buf, (size_t)n, now);
    }
    for (flow *f = g.flows, *nx; f; f = nx) {
        nx = f->next;
        for (int i = 0; f->rd && i < UDP_BATCH; i++) {
            ssize_t n = recv(f->fd, g.buf, sizeof(g.buf), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    f->rd = false;
                /* ECONNREFUSED: the upstream port is closed; keep the flow */
                continue;
            }
            udp_enqueue(DOWN, f, g.buf, (size_t)n, now);
        }
    }
    if (now - g.last_sweep >= NS_PER_S) {
        g.last_sweep = now;
        for (flow *f = g.flows, *nx; f; f = nx) {
            nx = f->next;
            if (f->refs == 0 && now - f->last > UDP_IDLE_NS)
                flow_end(f);
        }
    }
}

/* ---------------------------------------------------------------- main */

static void print_shaper(FILE *f, const shaper *s)
{
    fprintf(f,
            "{\"in_bytes\":%" PRIu64 ",\"in_pkts\":%" PRIu64 ",\"out_bytes\":%" PRIu64
            ",\"out_pkts\":%" PRIu64 ",\"drop_queue\":%" PRIu64 ",\"drop_loss\":%" PRIu64
            ",\"drop_send\":%" PRIu64 ",\"backlog\":%" PRId64 ",\"max_backlog\":%" PRId64 "}",
            s->in_bytes, s->in_pkts, s->out_bytes, s->out_pkts, s->drop_queue, s->drop_loss,
            s->drop_send, s->backlog, s->max_backlog);
}

static void print_stats(const char *event, int64_t now)
{
    FILE *f = stdout;
    fprintf(f,
            "{\"event\":\"%s\",\"mode\":\"%s\",\"uptime_ms\":%" PRId64 ",\"rate_bps\":%" PRId64
            ",\"rtt_us\":%" PRId64 ",\"queue_bytes\":%" PRId64 ",\"loss\":%g,\"seed\":%" PRIu64,
            event, g.o.udp ? "udp" : "tcp", (int64_t)((now - g.start) / NS_PER_MS), g.o.rate,
            g.o.rtt / 1000, g.o.queue, g.o.loss, g.o.seed);
    if (g.o.udp)
        fprintf(f, ",\"flows_total\":%" PRIu64 ",\"flows_open\":%d", g.flows_total, g.nflows);
    else
        fprintf(f,
                ",\"conns_total\":%" PRIu64 ",\"conns_open\":%d,\"connect_failures\":%" PRIu64
                ",\"resets\":%" PRIu64,
                g.conns_total, g.nconns, g.conn_fail, g.resets);
    fprintf(f, ",\"up\":");
    print_shaper(f, &g.sh[UP]);
    fprintf(f, ",\"down\":");
    print_shaper(f, &g.sh[DOWN]);
    fprintf(f, "}\n");
    fflush(f);
}

static void write_port_file(const char *path)
{
    struct sockaddr_storage a;
    socklen_t al = sizeof(a);
    if (getsockname(g.lfd, (struct sockaddr *)&a, &al) < 0)
        die("getsockname");
    int port = a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&a)->sin_port);
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
        fprintf(stderr, "cs-linkemu: --port-file path too long\n");
        exit(2);
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        die(tmp);
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        die(tmp);
    if (rename(tmp, path) < 0)
        die(path);
}

static void setup(void)
{
    opts *o = &g.o;
    int type = o->udp ? SOCK_DGRAM : SOCK_STREAM;
    struct sockaddr_storage la;
    socklen_t lal;
    parse_addr("--listen", o->listen, true, type, &la, &lal);
    parse_addr("--connect", o->connect, false, type, &g.up_addr, &g.up_alen);
    if (!o->queue_set) {
        int64_t bdp = bdp_bytes();
        o->queue = bdp > DEFAULT_QUEUE ? bdp : DEFAULT_QUEUE;
    }
    if (!o->seeded)
        o->seed = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    shaper_init(&g.sh[UP], "up", UP);
    shaper_init(&g.sh[DOWN], "down", DOWN);

    g.lfd = socket(la.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g.lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(g.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(g.lfd, (struct sockaddr *)&la, lal) < 0) {
        fprintf(stderr, "cs-linkemu: cannot listen on %s: %s\n", o->listen, strerror(errno));
        exit(1);
    }
    if (o->udp)
        set_bufs(g.lfd);
    else if (listen(g.lfd, 128) < 0)
        die("listen");

    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g.epfd < 0)
        die("epoll_create1");
    static epref lref = {EP_LISTEN, NULL, 0}, tref = {EP_TIMER, NULL, 0},
                 sref = {EP_SIGNAL, NULL, 0};
    ep_add(g.lfd, &lref, EPOLLIN | EPOLLET);
    g.lrd = true;

    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.tfd < 0)
        die("timerfd_create");
    ep_add(g.tfd, &tref, EPOLLIN);

    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGHUP);
    sigaddset(&ss, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
        die("sigprocmask");
    g.sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    if (g.sfd < 0)
        die("signalfd");
    ep_add(g.sfd, &sref, EPOLLIN);
    signal(SIGPIPE, SIG_IGN);

    if (o->port_file)
        write_port_file(o->port_file);
    fprintf(stderr,
            "cs-linkemu: %s %s -> %s, rate %.3f Mbit/s%s, rtt %.3f ms, queue %" PRId64
            " B, loss %g%%\n",
            o->udp ? "udp" : "tcp", o->listen, o->connect, (double)o->rate / 1e6,
            o->rate ? "" : " (unlimited)", (double)o->rtt / 1e6, o->queue, o->loss * 100);
}

static void handle_signals(int64_t now)
{
    struct signalfd_siginfo si;
    while (read(g.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGUSR1)
            print_stats("stats", now);
        else
            g.stop = true;
    }
}

static void arm_timer(int64_t when)
{
    struct itimerspec its = {0};
    if (when != INT64_MAX) {
        its.it_value.tv_sec = when / NS_PER_S;
        its.it_value.tv_nsec = when % NS_PER_S;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void shutdown_all(int64_t now)
{
    /* The link goes down: connections with data still on the way are reset
     * (so no client mistakes a cut transfer for a complete one), idle ones
     * get a FIN. */
    while (g.conns) {
        conn *c = g.conns;
        bool busy = false;
        for (int d = 0; d < 2; d++) {
            int unread = 0;
            if (c->fd[d] >= 0 && ioctl(c->fd[d], FIONREAD, &unread) < 0)
                unread = 0;
            busy = busy || unread > 0 || c->h[d].inlink > 0 || c->h[d].out_head != NULL;
        }
        conn_end(c, busy);
    }
    while (g.flows)
        flow_end(g.flows);
    for (int d = 0; d < 2; d++) {
        seg *s;
        while ((s = g.sh[d].head)) {
            g.sh[d].head = s->next;
            if (s->conn)
                conn_seg_done(s->conn);
            if (s->flow) {
                s->flow->refs--;
                flow_free_if_done(s->flow);
            }
            free(s);
        }
        g.sh[d].tail = g.sh[d].qcur = NULL;
    }
    if (g.o.stats)
        print_stats("exit", now);
    close(g.lfd);
    close(g.tfd);
    close(g.sfd);
    close(g.epfd);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    g.start = g.last_sweep = now_ns();
    setup();
    struct epoll_event evs[64];
    while (!g.stop) {
        int64_t now = now_ns();
        int64_t wake = INT64_MAX;
        if (g.o.udp) {
            udp_work(now);
            if (g.nflows)
                wake = g.last_sweep + NS_PER_S;
        } else {
            tcp_work(now, &wake);
        }
        for (int d = 0; d < 2; d++) {
            int64_t t = shaper_next_event(&g.sh[d]);
            if (t < wake)
                wake = t;
        }
        bool busy = g.lrd;
        for (flow *f = g.flows; f && !busy; f = f->next)
            busy = f->rd;
        int timeout = -1;
        if (busy || wake <= now_ns())
            timeout = 0;
        else
            arm_timer(wake);
        int n = epoll_wait(g.epfd, evs, 64, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            epref *r = evs[i].data.ptr;
            switch (r->type) {
            case EP_LISTEN:
                g.lrd = true;
                break;
            case EP_TIMER: {
                uint64_t x;
                while (read(g.tfd, &x, sizeof(x)) > 0) {
                }
                break;
            }
            case EP_SIGNAL:
                handle_signals(now_ns());
                break;
            case EP_CONN:
                conn_event(r->obj, r->side, evs[i].events);
                break;
            case EP_FLOW:
                ((flow *)r->obj)->rd = true;
                break;
            }
        }
    }
    shutdown_all(now_ns());
    return 0;
}
