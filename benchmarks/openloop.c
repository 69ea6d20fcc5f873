/* The open-loop HTTP/1.1 load generator of benchmarks/serving.py (compiled there with gcc).
 *
 *     openloop HOST PORT RATE|closed CONNS WARMUP_S DURATION_S  < request-bytes
 *     openloop --sink PORT SECONDS
 *
 * stdin holds one complete HTTP/1.1 request (head and body), sent as-is on every send. CONNS
 * keep-alive connections, each with at most one request in flight, one thread, one epoll.
 *
 * Open loop (RATE requests/s): request i is due at start + i/RATE whatever the server does.
 * A due request goes out on a free connection; when none is free it waits in a FIFO backlog
 * here and goes out when one frees. Latency runs from the *intended* send time, so waiting in
 * the backlog (or in a slow tick of this loop) counts against the server, as it would for a
 * real client (no coordinated omission). Closed loop ("closed"): each connection sends its
 * next request as soon as the previous answer is in (like wrk), latency from the send.
 *
 * Counted for requests whose intended time falls in [start + WARMUP, start + WARMUP + DURATION):
 * answers by status, 503s carrying Retry-After, connections the server closed with a request
 * in flight (status -1), and the latencies of the 200s. At the end, requests still unanswered
 * (in flight, or never sent from the backlog) count with the age they reached, among the 200s'
 * latencies, so an overloaded server cannot look fast by not answering. The 200s' p99 is also
 * given from the actual send (p99_from_send: the server's own share). Also reported: how late
 * this loop dispatched due requests (tick_lag: this program's own ability to hold the
 * schedule) and how late requests actually went out (send_lag: tick lag plus backlog waits, i.e.
 * connections all busy), and this process's CPU time. Output: one JSON object on stdout.
 *
 * --sink: a server that answers every request with a fixed 200 at once, for SECONDS (epoll, one
 * thread). The generator driven against it on another core shows its own ceiling: no Python
 * server can answer as fast on one core, so there what limits the rate is the generator.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define TICK_NS 100000LL /* the shortest wait between dispatch ticks: 0.1 ms */
#define MAX_STATUS 600

typedef struct {
    int fd;
    int busy;
    int64_t intended; /* ns, of the request in flight */
    int64_t sent_at;  /* ns, when it actually went out */
    size_t len;
    char buf[BUF];
} conn_t;

typedef struct {
    uint32_t *v;
    size_t n, cap;
} vec_t;

static void push(vec_t *a, uint32_t x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 1 << 16;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        if (!a->v) { perror("realloc"); exit(2); }
    }
    a->v[a->n++] = x;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* the q-quantile in ms of a sorted vector, or -1 when empty */
static double pct(const vec_t *a, double q) {
    if (!a->n) return -1;
    size_t i = (size_t)(q * a->n);
    if (i >= a->n) i = a->n - 1;
    return a->v[i] / 1000.0;
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static uint32_t us(int64_t ns) {
    int64_t u = ns / 1000;
    return u < 0 ? 0 : (u > 0xffffffffLL ? 0xffffffffu : (uint32_t)u);
}

/* -- state ------------------------------------------------------------------------------- */
static struct sockaddr_storage addr;
static socklen_t addrlen;
static int ep;
static char *request;
static size_t request_len;
static conn_t *conns;
static int *free_stack, n_free;
static int64_t *backlog; /* a ring of intended times */
static size_t bl_head, bl_n, bl_cap;
static int64_t measure_from, measure_to;
static long statuses[MAX_STATUS + 1], closed_in_flight, retry_after, lost_conns, sent;
static vec_t lat_ok, lat_ok_sent, lat_shed, send_lag, tick_lag;
static int closed_loop, stopping;

static void open_conn(conn_t *c) {
    c->fd = socket(addr.ss_family, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, addrlen) < 0) {
        perror("connect");
        exit(2);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->busy = 0;
    c->len = 0;
}

static int in_window(int64_t t) { return t >= measure_from && t < measure_to; }

static void send_on(conn_t *c, int64_t intended, int64_t now) {
    /* a ~200-byte request always fits an empty socket buffer: one write, no partial sends */
    ssize_t w = send(c->fd, request, request_len, MSG_NOSIGNAL);
    if (w != (ssize_t)request_len) {
        fprintf(stderr, "short write %zd: %s\n", w, strerror(errno));
        exit(2);
    }
    c->busy = 1;
    c->intended = intended;
    c->sent_at = now;
    sent++;
    if (in_window(intended)) push(&send_lag, us(now - intended));
}

static void backlog_push(int64_t t) {
    if (bl_n == bl_cap) {
        size_t cap = bl_cap ? 2 * bl_cap : 1 << 16;
        int64_t *b = malloc(cap * sizeof *b);
        if (!b) { perror("malloc"); exit(2); }
        for (size_t i = 0; i < bl_n; i++) b[i] = backlog[(bl_head + i) % bl_cap];
        free(backlog);
        backlog = b, bl_head = 0, bl_cap = cap;
    }
    backlog[(bl_head + bl_n++) % bl_cap] = t;
}

/* a connection is free: it takes the oldest waiting request, or its own next one when closed */
static void ready(conn_t *c, int64_t now) {
    if (stopping) {
        c->busy = 0;
        return;
    }
    if (closed_loop) {
        send_on(c, now, now);
    } else if (bl_n) {
        int64_t t = backlog[bl_head];
        bl_head = (bl_head + 1) % bl_cap, bl_n--;
        send_on(c, t, now);
    } else {
        c->busy = 0;
        free_stack[n_free++] = (int)(c - conns);
    }
}

static void dispatch(int64_t intended, int64_t now) {
    if (n_free) send_on(&conns[free_stack[--n_free]], intended, now);
    else backlog_push(intended);
}

/* -- answers ----------------------------------------------------------------------------- */
static const char *find_header(const char *head, size_t n, const char *name) {
    size_t k = strlen(name);
    for (const char *p = head; p + k < head + n; p++) {
        if (p[-1] == '\n' && strncasecmp(p, name, k) == 0) return p + k;
    }
    return NULL;
}

static void record(conn_t *c, int status, int has_retry_after, int64_t now) {
    if (!in_window(c->intended)) return;
    statuses[status >= 0 && status <= MAX_STATUS ? status : 0]++;
    if (status == 200) {
        push(&lat_ok, us(now - c->intended));
        push(&lat_ok_sent, us(now - c->sent_at));
    }
    else if (status == 503) {
        push(&lat_shed, us(now - c->intended));
        if (has_retry_after) retry_after++;
    }
}

static void lost(conn_t *c, int64_t now) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    lost_conns++;
    if (c->busy && in_window(c->intended)) closed_in_flight++;
    open_conn(c); /* keep the connection count */
    ready(c, now);
}

static void on_readable(conn_t *c) {
    ssize_t r = recv(c->fd, c->buf + c->len, BUF - c->len, 0);
    int64_t now = now_ns();
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        lost(c, now);
        return;
    }
    c->len += (size_t)r;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) {
            if (c->len == BUF) { fprintf(stderr, "answer head over %d bytes\n", BUF); exit(2); }
            return;
        }
        size_t head = (size_t)(end - c->buf) + 4;
        const char *cl = find_header(c->buf + 1, head - 1, "content-length:");
        size_t total = head + (cl ? strtoul(cl, NULL, 10) : 0);
        if (total > BUF) { fprintf(stderr, "answer over %d bytes\n", BUF); exit(2); }
        if (c->len < total) return;
        int status = c->len > 12 ? atoi(c->buf + 9) : 0;
        int ra = find_header(c->buf + 1, head - 1, "retry-after:") != NULL;
        int closing = find_header(c->buf + 1, head - 1, "connection: close") != NULL;
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
        if (!c->busy) continue; /* nothing was asked: ignore */
        c->busy = 0;
        record(c, status, ra, now);
        if (closing) { /* the server closes after this answer: reconnect before reuse */
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            lost_conns++;
            open_conn(c);
            ready(c, now);
            return;
        }
        ready(c, now);
    }
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* -- the sink: answers every request at once ------------------------------------------------ */
static const char SINK_ANSWER[] =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 19\r\n\r\n"
    "{\"predictions\":[0]}";

static int sink(int port, double seconds) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
        perror("sink");
        return 2;
    }
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    int64_t until = now_ns() + (int64_t)(seconds * 1e9);
    struct epoll_event evs[256];
    while (now_ns() < until) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int j = 0; j < k; j++) {
            conn_t *c = evs[j].data.ptr;
            if (!c) { /* a new connection */
                c = calloc(1, sizeof *c);
                c->fd = accept(lfd, NULL, NULL);
                if (c->fd < 0) { free(c); continue; }
                setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ce);
                continue;
            }
            ssize_t r = recv(c->fd, c->buf + c->len, BUF - c->len, 0);
            if (r <= 0) {
                close(c->fd);
                free(c);
                continue;
            }
            c->len += (size_t)r;
            for (;;) { /* each whole request (head + content-length body) gets the answer */
                char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
                if (!end) break;
                size_t head = (size_t)(end - c->buf) + 4;
                const char *cl = find_header(c->buf + 1, head - 1, "content-length:");
                size_t total = head + (cl ? strtoul(cl, NULL, 10) : 0);
                if (c->len < total) break;
                memmove(c->buf, c->buf + total, c->len - total);
                c->len -= total;
                send(c->fd, SINK_ANSWER, sizeof SINK_ANSWER - 1, MSG_NOSIGNAL);
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--sink") == 0) return sink(atoi(argv[2]), atof(argv[3]));
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT RATE|closed CONNS WARMUP_S DURATION_S < request\n", argv[0]);
        return 2;
    }
    closed_loop = strcmp(argv[3], "closed") == 0;
    double rate = closed_loop ? 0 : atof(argv[3]);
    int n = atoi(argv[4]);
    double warmup = atof(argv[5]), duration = atof(argv[6]);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(argv[1], argv[2], &hints, &ai) != 0) { fprintf(stderr, "bad address\n"); return 2; }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    size_t cap = 1 << 12;
    request = malloc(cap);
    for (ssize_t r; (r = read(0, request + request_len, cap - request_len)) > 0;) {
        request_len += (size_t)r;
        if (request_len == cap) request = realloc(request, cap *= 2);
    }
    if (!request_len) { fprintf(stderr, "no request on stdin\n"); return 2; }

    ep = epoll_create1(0);
    conns = calloc((size_t)n, sizeof *conns);
    free_stack = calloc((size_t)n, sizeof *free_stack);
    for (int i = 0; i < n; i++) open_conn(&conns[i]); /* all open before the schedule starts */

    int64_t start = now_ns() + 100000000LL;
    measure_from = start + (int64_t)(warmup * 1e9);
    measure_to = measure_from + (int64_t)(duration * 1e9);
    while (now_ns() < start) {}
    double cpu0 = cpu_seconds();
    int64_t wall0 = now_ns();
    for (int i = 0; i < n; i++) ready(&conns[i], start);

    struct epoll_event evs[256];
    uint64_t i = 0;
    double step = closed_loop ? 0 : 1e9 / rate;
    int64_t due = start;
    int64_t end = measure_to, drain_until = measure_to + 2000000000LL;
    for (;;) {
        int64_t now = now_ns();
        if (!stopping && now >= end) stopping = 1;
        if (stopping) {
            long busy = 0;
            for (int k = 0; k < n; k++) busy += conns[k].busy;
            if (!busy || now >= drain_until) break;
        } else if (!closed_loop && due <= now) {
            if (in_window(due)) push(&tick_lag, us(now - due));
            while (due <= now && due < end) {
                dispatch(due, now);
                due = start + (int64_t)(++i * step);
            }
        }
        int64_t wait = stopping ? 10000000LL : (closed_loop ? end - now : due - now_ns());
        if (wait < TICK_NS) wait = TICK_NS;
        struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        int k = epoll_pwait2(ep, evs, 256, &ts, NULL);
        for (int j = 0; j < k; j++) on_readable((conn_t *)evs[j].data.ptr);
    }
    int64_t stop = now_ns();
    double cpu = cpu_seconds() - cpu0, wall = (stop - wall0) / 1e9;

    long unanswered = 0;
    for (int k = 0; k < n; k++)
        if (conns[k].busy && in_window(conns[k].intended)) {
            push(&lat_ok, us(end - conns[k].intended));
            unanswered++;
        }
    for (size_t k = 0; k < bl_n; k++) {
        int64_t t = backlog[(bl_head + k) % bl_cap];
        if (in_window(t)) { push(&lat_ok, us(end - t)); unanswered++; }
    }
    vec_t *all[] = {&lat_ok, &lat_ok_sent, &lat_shed, &send_lag, &tick_lag};
    for (int k = 0; k < 5; k++) qsort(all[k]->v, all[k]->n, sizeof(uint32_t), cmp_u32);

    printf("{\"mode\": \"%s\", \"connections\": %d, ", closed_loop ? "closed" : "open", n);
    if (closed_loop) printf("\"offered_rps\": null, ");
    else printf("\"offered_rps\": %.1f, ", rate);
    printf("\"sent_rps\": %.1f, \"good_rps\": %.1f, \"statuses\": {", sent / ((end - start) / 1e9),
           statuses[200] / duration);
    int first = 1;
    if (closed_in_flight) { printf("\"-1\": %ld", closed_in_flight); first = 0; }
    for (int s = 0; s <= MAX_STATUS; s++)
        if (statuses[s]) { printf("%s\"%d\": %ld", first ? "" : ", ", s, statuses[s]); first = 0; }
    printf("}, \"shed_503\": %ld, \"shed_503_with_retry_after\": %ld, ", statuses[503], retry_after);
    printf("\"unanswered\": %ld, \"closed_connections\": %ld, ", unanswered, lost_conns);
    printf("\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, ",
           pct(&lat_ok, .5), pct(&lat_ok, .9), pct(&lat_ok, .99), pct(&lat_ok, .999));
    printf("\"p99_from_send_ms\": %.3f, \"shed_p99_ms\": %.3f, ", pct(&lat_ok_sent, .99),
           pct(&lat_shed, .99));
    if (closed_loop) printf("\"schedule_lag_p99_ms\": null, \"send_lag_p99_ms\": null, ");
    else printf("\"schedule_lag_p99_ms\": %.3f, \"send_lag_p99_ms\": %.3f, ", pct(&tick_lag, .99),
                pct(&send_lag, .99));
    printf("\"generator_cpu_share\": %.3f}\n", cpu / wall);
    return 0;
}
