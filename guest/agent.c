/*
 * tabvm guest agent: answers requests from the host over a serial line.
 *
 * Usage: tabvm-agent /dev/ttyS1
 *
 * The line is put in raw mode (115200 8N1, no echo, no translation).
 * The agent only ever answers; it never speaks first.
 *
 * Protocol (one request per line, one response per request, in order):
 *
 *   request:   ID VERB ARGS...\n
 *   response:  ID STATUS LEN\n  then exactly LEN payload bytes, then \n
 *
 *   ID      decimal token chosen by the host (1..20 digits), echoed back.
 *           A request whose ID is not decimal is answered with ID 0.
 *   STATUS  "ok" or "err" (on "err" the payload is a human-readable message).
 *   LEN     decimal byte count of the payload.
 *
 * Empty lines are ignored (the host may send "\n" to terminate a partial line).
 * NUL bytes in a request are read as spaces. Lines longer than 64 KiB are
 * answered with "err" (the ID is still taken from the start of the line) and
 * otherwise discarded.
 *
 * Verbs (ARGS is the rest of the line after "VERB "):
 *   ping                 -> "pong"
 *   read PATH            -> file contents (at most 1 MiB, else err); sysfs/proc work
 *   write PATH DATA      -> writes DATA (escapes: \n newline, \\ backslash) to PATH
 *                           in one write(2) call, creating/truncating it; payload empty
 *   sh CMD...            -> runs /bin/sh -c CMD, stdin /dev/null, stdout+stderr captured
 *                           (first 1 MiB kept); payload = output, then a last line
 *                           "exit=N" (N = exit status, or 128+signal)
 *   ls DIR               -> entry names, sorted bytewise, one per line ("." / ".." omitted)
 *   hold KEY VALUE       -> keeps VALUE (raw rest of line) under KEY in agent memory
 *   recall KEY           -> the VALUE held under KEY, err if none
 *   uname                -> sysname, nodename, release, version, machine; one per line
 *   usbclaim PATH        -> takes interface 0 of a usbfs device from its kernel driver
 *   usbctl TYPE REQUEST VALUE INDEX LENGTH [HEX]
 *                        -> one control transfer to it: "ok HEX" (IN data) or "stall"
 *   usbrelease           -> gives the interface back (the driver binds again)
 *   usbfuzz PATH COUNT SEED
 *                        -> sends malformed USB control requests to a usbfs device
 *                           (see verb_usbfuzz); "sent N ok A stall B timeout C other D"
 *   in SIZE PORT         -> reads an I/O port with a SIZE-byte access (1, 2 or 4);
 *                           payload = the value as 0x%x (x86 only)
 *   out SIZE PORT VALUE  -> writes VALUE to an I/O port with a SIZE-byte access
 *   events PATH MAX TIMEOUT_MS
 *                        -> opens PATH (an evdev node such as /dev/input/event3; a FIFO
 *                           or file of records works too) O_RDONLY|O_NONBLOCK and reads
 *                           struct input_event records with poll() until MAX records
 *                           were read or TIMEOUT_MS passed since the verb started
 *                           (MAX 1..10000, TIMEOUT_MS 0..600000; 0 = what is queued).
 *                           Payload: one line per record "SEC.USEC TYPE CODE VALUE"
 *                           (decimal, in order; empty if none). At end of file (a
 *                           file, a FIFO without writer) it looks again every 10 ms.
 *                           The agent is busy (answers nothing else) meanwhile.
 *   evstart ID PATH      -> opens PATH like events and keeps the fd under ID (0..7), so
 *                           events queue in the kernel (evdev buffer) from now on;
 *                           returns at once; err if ID is already started
 *   evtake ID MAX TIMEOUT_MS
 *                        -> reads like events from the fd kept under ID
 *   evstop ID            -> closes the fd kept under ID (ok if none)
 *
 * To add a verb: write a handler `static int verb_x(char *args, struct buf *out)`
 * returning 0 (ok) or -1 (err, message in out) and add it to VERBS[].
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <linux/usbdevice_fs.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#if defined(__x86_64__) || defined(__i386__)
#include <sys/io.h>
#define HAVE_PORT_IO 1
#endif
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (64 * 1024)
#define MAX_PAYLOAD (1024 * 1024)
#define MAX_ID 20

/* A growable byte buffer for response payloads. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

static void die(const char *msg)
{
    perror(msg);
    exit(1);
}

static void buf_reserve(struct buf *b, size_t extra)
{
    size_t need = b->len + extra;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        die("realloc");
    b->data = p;
    b->cap = cap;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Sets out to an error message and returns -1, for `return fail(...)`. */
static int fail(struct buf *out, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    out->len = 0;
    buf_str(out, tmp);
    return -1;
}

static int fail_errno(struct buf *out, const char *what, const char *path)
{
    return fail(out, "%s %s: %s", what, path, strerror(errno));
}

/* Splits "FIRST REST" at the first space: returns REST (or NULL if no space). */
static char *split_word(char *s)
{
    char *sp = strchr(s, ' ');
    if (!sp)
        return NULL;
    *sp = '\0';
    return sp + 1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                poll(&pfd, 1, 1000);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- verbs ---------------------------------------------------------------- */

static int verb_ping(char *args, struct buf *out)
{
    (void)args;
    buf_str(out, "pong");
    return 0;
}

static int verb_read(char *path, struct buf *out)
{
    if (!path || !*path)
        return fail(out, "usage: read PATH");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno(out, "open", path);
    for (;;) {
        buf_reserve(out, 65536);
        ssize_t n = read(fd, out->data + out->len, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return fail_errno(out, "read", path);
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        if (out->len > MAX_PAYLOAD) {
            close(fd);
            return fail(out, "%s: larger than %d bytes", path, MAX_PAYLOAD);
        }
    }
    close(fd);
    return 0;
}

/* Decodes \n and \\ in place; returns the decoded length or -1 on a bad escape. */
static long unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        r++;
        if (*r == 'n')
            *w++ = '\n';
        else if (*r == '\\')
            *w++ = '\\';
        else
            return -1;
    }
    return w - s;
}

static int verb_write(char *args, struct buf *out)
{
    char *data = args ? split_word(args) : NULL;
    if (!args || !*args || !data)
        return fail(out, "usage: write PATH DATA");
    long n = unescape(data);
    if (n < 0)
        return fail(out, "bad escape (only \\n and \\\\ are allowed)");
    int fd = open(args, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail_errno(out, "open", args);
    ssize_t w;
    do
        w = write(fd, data, (size_t)n);
    while (w < 0 && errno == EINTR);
    int e = errno;
    if (close(fd) < 0 && w >= 0) {
        e = errno;
        w = -1;
    }
    if (w < 0) {
        errno = e;
        return fail_errno(out, "write", args);
    }
    if (w != n)
        return fail(out, "%s: short write (%zd of %ld bytes)", args, w, n);
    return 0;
}

/* Runs the shell child: output to the pipe, stdin from /dev/null. */
static void sh_child(int pipe_w, const char *cmd)
{
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) {
        dup2(null, 0);
        close(null);
    }
    dup2(pipe_w, 1);
    dup2(pipe_w, 2);
    close(pipe_w);
    setsid();
    signal(SIGPIPE, SIG_DFL);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
}

/*
 * Collects the child's output until it exits. Output from background processes
 * that keep the pipe open is only read while the shell runs, plus what is
 * already buffered when it exits, so "daemon &" does not block the agent.
 */
static int sh_collect(int fd, pid_t pid, struct buf *out)
{
    int status = 0;
    int exited = 0;
    char tmp[4096];
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, exited ? 0 : 50);
        if (r > 0) {
            ssize_t n = read(fd, tmp, sizeof(tmp));
            if (n > 0) {
                size_t keep = out->len < MAX_PAYLOAD ? MAX_PAYLOAD - out->len : 0;
                buf_add(out, tmp, (size_t)n < keep ? (size_t)n : keep);
                continue;
            }
            if (n == 0 || (errno != EINTR && errno != EAGAIN))
                break; /* EOF: every writer is gone */
        } else if (exited) {
            break; /* shell gone and nothing left buffered */
        }
        if (!exited) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid)
                exited = 1;
        }
    }
    if (!exited)
        waitpid(pid, &status, 0);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

static int verb_sh(char *cmd, struct buf *out)
{
    if (!cmd || !*cmd)
        return fail(out, "usage: sh CMD");
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return fail(out, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return fail(out, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(p[0]);
        sh_child(p[1], cmd);
    }
    close(p[1]);
    int code = sh_collect(p[0], pid, out);
    close(p[0]);
    if (out->len > 0 && out->data[out->len - 1] != '\n')
        buf_str(out, "\n");
    buf_printf(out, "exit=%d", code);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int verb_ls(char *path, struct buf *out)
{
    if (!path || !*path)
        return fail(out, "usage: ls DIR");
    DIR *d = opendir(path);
    if (!d)
        return fail_errno(out, "opendir", path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
            if (!names)
                die("realloc");
        }
        names[n] = strdup(e->d_name);
        if (!names[n])
            die("strdup");
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n; i++) {
        buf_str(out, names[i]);
        if (i + 1 < n)
            buf_str(out, "\n");
        free(names[i]);
    }
    free(names);
    return 0;
}

/* hold/recall: a small key -> value store, kept in this process's memory. */
struct held {
    char *key;
    char *value;
    struct held *next;
};
static struct held *held_list;

static struct held *held_find(const char *key)
{
    for (struct held *h = held_list; h; h = h->next)
        if (!strcmp(h->key, key))
            return h;
    return NULL;
}

static int verb_hold(char *args, struct buf *out)
{
    char *value = args ? split_word(args) : NULL;
    if (!args || !*args || !value)
        return fail(out, "usage: hold KEY VALUE");
    char *copy = strdup(value);
    if (!copy)
        die("strdup");
    struct held *h = held_find(args);
    if (h) {
        free(h->value);
    } else {
        h = calloc(1, sizeof(*h));
        if (!h || !(h->key = strdup(args)))
            die("calloc");
        h->next = held_list;
        held_list = h;
    }
    h->value = copy;
    return 0;
}

static int verb_recall(char *key, struct buf *out)
{
    if (!key || !*key)
        return fail(out, "usage: recall KEY");
    struct held *h = held_find(key);
    if (!h)
        return fail(out, "nothing held under %s", key);
    buf_str(out, h->value);
    return 0;
}

static int verb_uname(char *args, struct buf *out)
{
    (void)args;
    struct utsname u;
    if (uname(&u) < 0)
        return fail(out, "%s", strerror(errno));
    buf_printf(out, "%s\n%s\n%s\n%s\n%s", u.sysname, u.nodename, u.release,
               u.version, u.machine);
    return 0;
}

/* Port I/O, for tests that poke device registers the way a driver (or a
 * misbehaving guest) would. */
static int parse_port_args(char *args, int want_value, unsigned *size,
                           unsigned long *port, unsigned long *value, struct buf *out)
{
    char *end;
    char *rest = args ? split_word(args) : NULL;
    char *third = rest ? split_word(rest) : NULL;

    if (!args || !rest || (want_value && !third))
        return fail(out, want_value ? "usage: out SIZE PORT VALUE" : "usage: in SIZE PORT");
    *size = (unsigned)strtoul(args, &end, 0);
    if (*end || (*size != 1 && *size != 2 && *size != 4))
        return fail(out, "SIZE must be 1, 2 or 4");
    *port = strtoul(rest, &end, 0);
    if (*end || *port > 0xffff || *port + *size > 0x10000)
        return fail(out, "bad PORT %s", rest);
    if (want_value) {
        *value = strtoul(third, &end, 0);
        if (*end)
            return fail(out, "bad VALUE %s", third);
    }
#ifdef HAVE_PORT_IO
    if (ioperm(*port, *size, 1) < 0)
        return fail(out, "ioperm: %s", strerror(errno));
    return 0;
#else
    return fail(out, "port I/O is not supported on this architecture");
#endif
}

static int verb_in(char *args, struct buf *out)
{
    unsigned size;
    unsigned long port, value = 0;

    if (parse_port_args(args, 0, &size, &port, &value, out) < 0)
        return -1;
#ifdef HAVE_PORT_IO
    value = size == 1 ? inb(port) : size == 2 ? inw(port) : inl(port);
#endif
    buf_printf(out, "0x%lx", value);
    return 0;
}

static int verb_out(char *args, struct buf *out)
{
    unsigned size;
    unsigned long port, value = 0;

    if (parse_port_args(args, 1, &size, &port, &value, out) < 0)
        return -1;
#ifdef HAVE_PORT_IO
    if (size == 1)
        outb((unsigned char)value, port);
    else if (size == 2)
        outw((unsigned short)value, port);
    else
        outl((unsigned)value, port);
#endif
    return 0;
}

/* ---- input events --------------------------------------------------------- */

#define EV_IDS 8
#define EV_MAX_COUNT 10000UL
#define EV_MAX_TIMEOUT_MS 600000UL
#define EV_USAGE "(MAX 1..10000, TIMEOUT_MS 0..600000)"

/* An open event source. carry holds the start of a record split across reads
 * (a FIFO or file can do that; evdev only returns whole records). */
struct evsrc {
    int used;
    int fd;
    char *path;
    size_t carry_len;
    unsigned char carry[sizeof(struct input_event)];
};
static struct evsrc ev_ids[EV_IDS];

/* Parses a plain decimal number in [min, max]; returns 0, or -1 if malformed. */
static int parse_dec(const char *s, unsigned long min, unsigned long max,
                     unsigned long *value)
{
    unsigned long n = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        n = n * 10 + (unsigned long)(*s - '0');
        if (n > max)
            return -1; /* max is small: no overflow before this check */
    }
    if (n < min)
        return -1;
    *value = n;
    return 0;
}

/* Splits "REST LAST" at the last space: returns LAST (or NULL if no space). */
static char *split_last(char *s)
{
    char *sp = strrchr(s, ' ');
    if (!sp)
        return NULL;
    *sp = '\0';
    return sp + 1;
}

static long ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    /* whole milliseconds, never rounded up (a deadline is never left early) */
    long long ns = (long long)(now.tv_sec - t0->tv_sec) * 1000000000LL +
                   (now.tv_nsec - t0->tv_nsec);
    return (long)(ns / 1000000LL);
}

/* Parses "... MAX TIMEOUT_MS" off the end of args (which keeps the front). */
static int parse_count_timeout(char *args, unsigned long *max, unsigned long *timeout_ms)
{
    char *t = args ? split_last(args) : NULL;
    char *m = t ? split_last(args) : NULL;
    if (!m || !*args || parse_dec(m, 1, EV_MAX_COUNT, max) < 0 ||
        parse_dec(t, 0, EV_MAX_TIMEOUT_MS, timeout_ms) < 0)
        return -1;
    return 0;
}

/*
 * Reads up to max records from src until timeout_ms after t0; one line each in
 * out. Never reads past max records, so the rest stays queued for the next call.
 */
static int ev_read(struct evsrc *src, unsigned long max, unsigned long timeout_ms,
                   const struct timespec *t0, struct buf *out)
{
    const size_t rec = sizeof(struct input_event);
    unsigned char tmp[64 * sizeof(struct input_event)];
    unsigned long n = 0;

    while (n < max) {
        size_t want = (max - n) * rec - src->carry_len;
        if (want > sizeof(tmp))
            want = sizeof(tmp);
        ssize_t r = read(src->fd, tmp, want);
        if (r > 0) {
            for (size_t off = 0; off < (size_t)r;) {
                size_t take = rec - src->carry_len;
                if (take > (size_t)r - off)
                    take = (size_t)r - off;
                memcpy(src->carry + src->carry_len, tmp + off, take);
                src->carry_len += take;
                off += take;
                if (src->carry_len < rec)
                    continue;
                struct input_event ev;
                memcpy(&ev, src->carry, rec);
                src->carry_len = 0;
                buf_printf(out, "%s%lld.%06lld %u %u %d", n ? "\n" : "",
                           (long long)ev.input_event_sec, (long long)ev.input_event_usec,
                           (unsigned)ev.type, (unsigned)ev.code, (int)ev.value);
                n++;
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN)
            return fail_errno(out, "read", src->path);
        long left = (long)timeout_ms - ms_since(t0);
        if (left <= 0)
            break;
        if (r == 0) {
            /* end of file (or a FIFO without writer, which polls as ready):
             * look again shortly */
            poll(NULL, 0, left < 10 ? (int)left : 10);
            continue;
        }
        struct pollfd pfd = {.fd = src->fd, .events = POLLIN};
        poll(&pfd, 1, (int)left);
    }
    return 0;
}

static int ev_open(struct evsrc *src, const char *path, struct buf *out)
{
    src->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (src->fd < 0)
        return fail_errno(out, "open", path);
    src->path = strdup(path);
    if (!src->path)
        die("strdup");
    src->carry_len = 0;
    src->used = 1;
    return 0;
}

static void ev_close(struct evsrc *src)
{
    if (!src->used)
        return;
    close(src->fd);
    free(src->path);
    memset(src, 0, sizeof(*src));
}

static int verb_events(char *args, struct buf *out)
{
    struct timespec t0;
    unsigned long max, timeout_ms;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (parse_count_timeout(args, &max, &timeout_ms) < 0)
        return fail(out, "usage: events PATH MAX TIMEOUT_MS " EV_USAGE);
    struct evsrc src = {0};
    if (ev_open(&src, args, out) < 0)
        return -1;
    int rc = ev_read(&src, max, timeout_ms, &t0, out);
    ev_close(&src);
    return rc;
}

static int parse_ev_id(const char *s, unsigned long *id)
{
    return parse_dec(s, 0, EV_IDS - 1, id);
}

static int verb_evstart(char *args, struct buf *out)
{
    char *path = args ? split_word(args) : NULL;
    unsigned long id;
    if (!path || !*path || parse_ev_id(args, &id) < 0)
        return fail(out, "usage: evstart ID PATH (ID 0..%d)", EV_IDS - 1);
    if (ev_ids[id].used)
        return fail(out, "event source %lu is in use (%s); evstop it first", id,
                    ev_ids[id].path);
    return ev_open(&ev_ids[id], path, out);
}

static int verb_evtake(char *args, struct buf *out)
{
    struct timespec t0;
    unsigned long id, max, timeout_ms;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (parse_count_timeout(args, &max, &timeout_ms) < 0 || parse_ev_id(args, &id) < 0)
        return fail(out, "usage: evtake ID MAX TIMEOUT_MS (ID 0..%d) " EV_USAGE,
                    EV_IDS - 1);
    if (!ev_ids[id].used)
        return fail(out, "event source %lu is not started (evstart ID PATH)", id);
    return ev_read(&ev_ids[id], max, timeout_ms, &t0, out);
}

static int verb_evstop(char *args, struct buf *out)
{
    unsigned long id;
    if (parse_ev_id(args, &id) < 0)
        return fail(out, "usage: evstop ID (ID 0..%d)", EV_IDS - 1);
    ev_close(&ev_ids[id]);
    return 0;
}

/* ---- USB control-request fuzzing ---------------------------------------- */

/*
 * usbfuzz PATH COUNT SEED: detaches the kernel driver from interface 0 of the
 * usbfs device PATH (/dev/bus/usb/BBB/DDD), sends every HID class request
 * (GET/SET_REPORT, GET/SET_IDLE, GET/SET_PROTOCOL and unknown ones) with odd
 * report types, IDs and lengths 0..4096, then COUNT pseudo-random requests of
 * every request type; reattaches the driver. Requests that would change the
 * device's address, configuration or alternate setting behind the kernel's
 * back are not sent. Payload: "sent N ok A stall B timeout C other D".
 */
static uint32_t fuzz_rand(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 8;
}

static int fuzz_skip(uint8_t type, uint8_t request)
{
    /* standard SET_ADDRESS, SET_CONFIGURATION, SET_INTERFACE */
    return (type & 0x60) == 0 &&
           (request == 5 || request == 9 || request == 11);
}

static int verb_usbfuzz(char *args, struct buf *out)
{
    static const uint16_t lengths[] = {0, 1, 2, 3, 4, 7, 64, 255, 256, 257, 258,
                                       1024, 4095, 4096};
    static const uint16_t values[] = {0x0000, 0x0100, 0x0101, 0x0102, 0x0105,
                                      0x0200, 0x0201, 0x0300, 0x0301, 0x0303,
                                      0x0304, 0x0305, 0x0306, 0x03ff, 0x0400,
                                      0x2100, 0x2200, 0x2201, 0xffff};
    static const uint8_t class_types[] = {0x21, 0xa1, 0x20, 0xa0, 0x22, 0xa2};
    static unsigned char data[4096];
    char *count_s = args ? split_word(args) : NULL;
    char *seed_s = count_s ? split_word(count_s) : NULL;
    long count, sent = 0, ok = 0, stall = 0, timeout = 0, other = 0;
    uint32_t state;
    unsigned int ifno = 0;
    struct usbdevfs_ioctl detach = {.ifno = 0, .ioctl_code = USBDEVFS_DISCONNECT};
    struct usbdevfs_ioctl attach = {.ifno = 0, .ioctl_code = USBDEVFS_CONNECT};
    int fd;

    if (!args || !count_s || !seed_s)
        return fail(out, "usage: usbfuzz PATH COUNT SEED");
    count = strtol(count_s, NULL, 10);
    state = (uint32_t)strtoul(seed_s, NULL, 10);
    if (count < 0 || count > 1000000)
        return fail(out, "COUNT must be 0..1000000");
    fd = open(args, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return fail_errno(out, "open", args);
    ioctl(fd, USBDEVFS_IOCTL, &detach);     /* fails if no driver: fine */
    if (ioctl(fd, USBDEVFS_CLAIMINTERFACE, &ifno) < 0) {
        int e = errno;
        ioctl(fd, USBDEVFS_IOCTL, &attach);
        close(fd);
        return fail(out, "claim interface 0: %s", strerror(e));
    }
    for (long i = 0;; i++) {
        struct usbdevfs_ctrltransfer ct = {.timeout = 500, .data = data};
        size_t n_class = sizeof(class_types) * 16 * (sizeof(values) / 2) *
                         (sizeof(lengths) / 2);

        if ((size_t)i < n_class) {
            size_t k = (size_t)i;
            ct.wLength = lengths[k % (sizeof(lengths) / 2)];
            k /= sizeof(lengths) / 2;
            ct.wValue = values[k % (sizeof(values) / 2)];
            k /= sizeof(values) / 2;
            ct.bRequest = k % 16;
            ct.bRequestType = class_types[k / 16];
        } else if ((size_t)i < n_class + (size_t)count) {
            ct.bRequestType = fuzz_rand(&state);
            ct.bRequest = fuzz_rand(&state) % 4 ? fuzz_rand(&state) % 16
                                                 : fuzz_rand(&state);
            ct.wValue = fuzz_rand(&state) % 2 ? values[fuzz_rand(&state) % 19]
                                              : fuzz_rand(&state);
            ct.wIndex = fuzz_rand(&state) % 3 ? 0 : fuzz_rand(&state);
            ct.wLength = lengths[fuzz_rand(&state) % (sizeof(lengths) / 2)];
        } else {
            break;
        }
        if (fuzz_skip(ct.bRequestType, ct.bRequest))
            continue;
        for (unsigned j = 0; j < ct.wLength; j++)
            data[j] = (unsigned char)fuzz_rand(&state);
        if (ct.wLength >= 1)
            data[0] = ct.wValue & 0xff;          /* often a valid report ID */
        sent++;
        if (ioctl(fd, USBDEVFS_CONTROL, &ct) >= 0)
            ok++;
        else if (errno == EPIPE)
            stall++;
        else if (errno == ETIMEDOUT)
            timeout++;
        else
            other++;
    }
    ioctl(fd, USBDEVFS_RELEASEINTERFACE, &ifno);
    ioctl(fd, USBDEVFS_IOCTL, &attach);
    close(fd);
    buf_printf(out, "sent %ld ok %ld stall %ld timeout %ld other %ld", sent, ok,
               stall, timeout, other);
    return 0;
}

/*
 * usbclaim PATH / usbctl TYPE REQUEST VALUE INDEX LENGTH [HEX] / usbrelease:
 * take interface 0 of a usbfs device from its kernel driver, send control
 * transfers to it, give it back (the driver binds again). Numbers may be hex
 * (0x..); OUT data is HEX (LENGTH bytes). usbctl answers "ok HEX" with the IN
 * data (empty for OUT), or "stall".
 */
static int usb_fd = -1;

static int verb_usbclaim(char *path, struct buf *out)
{
    unsigned int ifno = 0;
    struct usbdevfs_ioctl detach = {.ifno = 0, .ioctl_code = USBDEVFS_DISCONNECT};

    if (!path || !*path)
        return fail(out, "usage: usbclaim PATH");
    if (usb_fd >= 0)
        return fail(out, "a device is already claimed");
    usb_fd = open(path, O_RDWR | O_CLOEXEC);
    if (usb_fd < 0)
        return fail_errno(out, "open", path);
    ioctl(usb_fd, USBDEVFS_IOCTL, &detach);
    if (ioctl(usb_fd, USBDEVFS_CLAIMINTERFACE, &ifno) < 0) {
        int e = errno;
        close(usb_fd);
        usb_fd = -1;
        return fail(out, "claim interface 0: %s", strerror(e));
    }
    return 0;
}

static int verb_usbrelease(char *args, struct buf *out)
{
    unsigned int ifno = 0;
    struct usbdevfs_ioctl attach = {.ifno = 0, .ioctl_code = USBDEVFS_CONNECT};

    (void)args;
    (void)out;
    if (usb_fd < 0)
        return 0;
    ioctl(usb_fd, USBDEVFS_RELEASEINTERFACE, &ifno);
    ioctl(usb_fd, USBDEVFS_IOCTL, &attach);
    close(usb_fd);
    usb_fd = -1;
    return 0;
}

static int verb_usbctl(char *args, struct buf *out)
{
    static unsigned char data[4096];
    char *f[6] = {args};
    unsigned long v[5];
    int n = 1, r;

    while (args && n < 6 && (f[n] = split_word(f[n - 1])) != NULL)
        n++;
    if (!args || n < 5)
        return fail(out, "usage: usbctl TYPE REQUEST VALUE INDEX LENGTH [HEX]");
    if (usb_fd < 0)
        return fail(out, "no device claimed (usbclaim PATH first)");
    for (int i = 0; i < 5; i++) {
        char *end;
        v[i] = strtoul(f[i], &end, 0);
        if (*end)
            return fail(out, "bad number %s", f[i]);
    }
    if (v[0] > 0xff || v[1] > 0xff || v[2] > 0xffff || v[3] > 0xffff ||
        v[4] > sizeof(data))
        return fail(out, "value out of range");
    memset(data, 0, sizeof(data));
    if (!(v[0] & 0x80) && v[4]) {
        if (n < 6 || strlen(f[5]) != 2 * v[4])
            return fail(out, "OUT transfer needs LENGTH bytes of HEX");
        for (unsigned long i = 0; i < v[4]; i++) {
            unsigned int byte;
            if (sscanf(f[5] + 2 * i, "%2x", &byte) != 1)
                return fail(out, "bad HEX");
            data[i] = (unsigned char)byte;
        }
    }
    struct usbdevfs_ctrltransfer ct = {
        .bRequestType = v[0], .bRequest = v[1], .wValue = v[2], .wIndex = v[3],
        .wLength = v[4], .timeout = 1000, .data = data,
    };
    r = ioctl(usb_fd, USBDEVFS_CONTROL, &ct);
    if (r < 0 && errno == EPIPE) {
        buf_str(out, "stall");
        return 0;
    }
    if (r < 0)
        return fail(out, "control transfer: %s", strerror(errno));
    buf_str(out, "ok ");
    if (v[0] & 0x80)
        for (int i = 0; i < r; i++)
            buf_printf(out, "%02x", data[i]);
    return 0;
}

static const struct verb {
    const char *name;
    int (*handler)(char *args, struct buf *out);
} VERBS[] = {
    {"ping", verb_ping},   {"read", verb_read}, {"write", verb_write},
    {"sh", verb_sh},       {"ls", verb_ls},     {"hold", verb_hold},
    {"recall", verb_recall}, {"uname", verb_uname},
    {"in", verb_in},       {"out", verb_out},
    {"events", verb_events}, {"evstart", verb_evstart}, {"evtake", verb_evtake},
    {"evstop", verb_evstop}, {"usbfuzz", verb_usbfuzz},
    {"usbclaim", verb_usbclaim}, {"usbctl", verb_usbctl},
    {"usbrelease", verb_usbrelease},
};

/* ---- request loop --------------------------------------------------------- */

static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > MAX_ID)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (id[i] < '0' || id[i] > '9')
            return 0;
    return 1;
}

static void respond(int fd, const char *id, int ok, const struct buf *payload)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "%s %s %zu\n", id, ok ? "ok" : "err",
                     payload->len);
    if (write_all(fd, head, (size_t)n) < 0 ||
        write_all(fd, payload->data ? payload->data : "", payload->len) < 0 ||
        write_all(fd, "\n", 1) < 0)
        die("write response");
}

/* Handles one complete line (NUL-terminated, no newline). */
static void handle_line(int fd, char *line, int overlong)
{
    struct buf out = {0};
    if (line[0] == '\0' && !overlong)
        return;
    char *rest = split_word(line);
    const char *id = valid_id(line) ? line : "0";
    int ok = 0;
    if (overlong) {
        fail(&out, "line longer than %d bytes", MAX_LINE);
    } else if (!valid_id(line)) {
        fail(&out, "bad request id (want: ID VERB ARGS...)");
    } else if (!rest || !*rest) {
        fail(&out, "missing verb");
    } else {
        char *args = split_word(rest);
        const struct verb *v = NULL;
        for (size_t i = 0; i < sizeof(VERBS) / sizeof(VERBS[0]); i++)
            if (!strcmp(VERBS[i].name, rest))
                v = &VERBS[i];
        if (v)
            ok = v->handler(args, &out) == 0;
        else
            fail(&out, "unknown verb: %.64s", rest);
    }
    respond(fd, id, ok, &out);
    free(out.data);
}

static void set_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) < 0)
        return; /* not a tty (e.g. a socket or pipe in tests): nothing to set */
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    cfsetispeed(&t, B115200);
    cfsetospeed(&t, B115200);
    if (tcsetattr(fd, TCSANOW, &t) < 0)
        die("tcsetattr");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SERIAL-DEVICE\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int fd = open(argv[1], O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        die(argv[1]);
    set_raw(fd);

    static char line[MAX_LINE + 1];
    size_t len = 0;
    int overlong = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            die("read request");
        for (ssize_t i = 0; i < n; i++) {
            char c = chunk[i];
            if (c == '\n') {
                line[len] = '\0';
                handle_line(fd, line, overlong);
                len = 0;
                overlong = 0;
            } else if (len < MAX_LINE) {
                line[len++] = c ? c : ' ';
            } else {
                overlong = 1; /* keep the start (for the ID), drop the rest */
            }
        }
    }
}
