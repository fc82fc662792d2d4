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
 *   usbepfuzz PATH COUNT SEED
 *                        -> sends malformed and random bulk, interrupt and isochronous
 *                           transfers, alternate-setting switches and clear-halts to
 *                           every non-control endpoint of a usbfs device, found in its
 *                           descriptors (see verb_usbepfuzz); COUNT 0..1000000, SEED
 *                           0..4294967295; "sent N ok A stall B timeout C other D"
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
 * Bluetooth (DEV is the N of hciN; addresses are printed most significant byte
 * first, "aa:bb:cc:dd:ee:ff"; hex is lowercase). Without AF_BLUETOOTH in the
 * kernel every one is err "no bluetooth: ...". Every wait is bounded (hciup: by
 * the kernel, which runs the controller init inside HCIDEVUP).
 *   hcilist              -> one line per controller "hciN ADDR 0xFLAGS"; empty if none
 *   hciup DEV            -> HCIDEVUP (already up is fine); payload "up"
 *   hciinfo DEV          -> "name hciN addr ADDR flags 0xF up 0|1 bus N type N acl_mtu N
 *                           acl_pkts N sco_mtu N sco_pkts N" (one line; bus and type are
 *                           hci_dev_info.type & 0x0f and >> 4)
 *   hcicmd DEV OPCODE PARAMS TIMEOUT_MS
 *                        -> sends one HCI command on a raw HCI socket (OPCODE 0x0001..
 *                           0xffff, PARAMS hex of at most 255 bytes or "-", TIMEOUT_MS
 *                           1..60000) and waits for its Command Complete ("complete HEX",
 *                           the return parameters, "-" if none) or Command Status
 *                           ("status 0xNN")
 *   lescan DEV DURATION_MS
 *                        -> active LE scan for DURATION_MS (1..60000), legacy commands or,
 *                           if the controller refuses them (0x01, 0x0c), extended ones;
 *                           one line per (address, type) seen "ADDR TYPE RSSI NAME"
 *                           sorted by address (TYPE public|random|public-id|random-id|
 *                           anon, RSSI of the latest report, NAME complete or else
 *                           shortened local name, spaces as '_', other unprintable bytes
 *                           as '?', "-" if none); at most 256 advertisers
 *   hcirtt DEV COUNT     -> COUNT (1..100000) HCI_Read_BD_ADDR round trips, one after the
 *                           other; one line per round trip, its time in ns (send to
 *                           Command Complete, CLOCK_MONOTONIC); err if one takes 2 s
 *   l2send DEV ADDR public|random PSM TOTAL SDU
 *                        -> LE credit-based L2CAP channel from hciDEV (its public
 *                           address) to ADDR on PSM (1..0xff): one 8-byte SDU with TOTAL
 *                           (1..1e9) as a big-endian u64, then TOTAL bytes (byte k is
 *                           k mod 256) in SDUs of SDU (1..65535, at most the channel's
 *                           outgoing MTU) bytes, then waits for one SDU from the peer
 *                           holding the count it received in ASCII decimal. Payload
 *                           "sent TOTAL acked N ns NS" (NS: first data SDU sent to answer
 *                           received). Waits at most 10 s to connect, 10 s for room to
 *                           send any one SDU, 30 s for the answer.
 *
 * Audio (ALSA through the kernel's ioctl ABI, no alsa-lib). CARD and DEV (0..255)
 * name /dev/snd/pcmC<CARD>D<DEV>p (playback) or ...c (capture), and
 * /dev/snd/controlC<CARD>. Samples are S16_LE, RW interleaved, at exactly RATE
 * (8000..192000) and CHANNELS (1..8); period ~10 ms, 4 periods (or what the
 * driver allows). The PCM is non-blocking and every wait is bounded: a transfer
 * (drain included) gives up, err and stream dropped, MS + 5000 ms after the verb
 * started. ALSA starts mixer controls muted: unmute with ctlset first.
 *   pcmplay CARD DEV RATE CHANNELS FREQ MS [AMPLITUDE_PERMILLE]
 *                        -> plays MS (1..120000) ms of a FREQ Hz (1..(RATE-1)/2) sine of
 *                           AMPLITUDE_PERMILLE (0..1000, default 500) of full scale, the
 *                           same on every channel, phase-continuous; underruns are counted
 *                           and recovered (PREPARE); then drains. "frames N xruns X ms
 *                           ELAPSED rate R channels C period P buffer B" (ELAPSED: first
 *                           write to the end of the drain; R..B as the driver set them)
 *   pcmrec CARD DEV RATE CHANNELS MS [PATH]
 *                        -> records MS (200..10000) ms (overruns counted and recovered:
 *                           PREPARE, START) and analyses channel 0 after its first 100 ms:
 *                           "frames N xruns X freq F rms R peak P" (F: dominant frequency
 *                           in Hz, 2 decimals, 0.00 if all samples are 0; R, P: fractions
 *                           of full scale, 6 decimals). PATH gets the raw capture.
 *   ctllist CARD         -> one line per control element: "numid N iface I type T access
 *                           A count C values V,V.. min MIN max MAX step S index X device D
 *                           name NAME" (A: r, w, i (inactive) or -; values "-" if not
 *                           shown: unreadable, bytes or iec958)
 *   ctlset CARD NUMID VALUE[,VALUE...]
 *                        -> writes a boolean, integer, integer64 or enumerated element
 *                           (one value for every channel, or one each; range checked);
 *                           payload: the values read back "V,V.."
 *
 * Memory, for automatic ballooning (sizes in KiB; the files read are exactly
 * /proc/meminfo and /proc/vmstat, which tests simulate by redefining open()).
 *   mem                  -> one line "total=N free=N available=N cached=N buffers=N shmem=N
 *                           anon=N balloon=N oom_kills=N": MemTotal, MemFree, MemAvailable,
 *                           Cached, Buffers, Shmem, AnonPages of /proc/meminfo (err if one
 *                           is missing); balloon: balloon_inflate - balloon_deflate of
 *                           /proc/vmstat (CONFIG_MEMORY_BALLOON) times the page size, -1
 *                           if the kernel does not count them; oom_kills: its oom_kill, -1
 *                           if absent (before Linux 4.13)
 *   memhog MIB [MIB_PER_S]
 *                        -> ends the memhog child if one runs (SIGKILL, reaped); then, if
 *                           MIB > 0, forks one that mmaps MIB MiB of private anonymous
 *                           memory and writes every page (non-zero bytes, every page
 *                           different) at MIB_PER_S MiB/s (0..1048576; 0 or absent: as
 *                           fast as it can) and then holds it until ended. The child sets
 *                           its oom_score_adj to 1000, keeps none of the agent's fds and
 *                           dies with the agent. Answers at once: the new child's pid, or
 *                           for MIB 0 the pid it ended (0 if none ran). err: MIB or
 *                           MIB_PER_S not plain decimal or too large, MIB above
 *                           4 x MemTotal; a running child is then left alone.
 *   memhogstat           -> "pid=P touched_kib=T target_kib=X done=0|1 alive=0|1 status=S"
 *                           of the latest child (pid=0 ... status=none if none was started;
 *                           T as the child last published it, every 256 KiB); S is the rest
 *                           of the line: running, exited N (2: mmap failed), killed SIGNAME
 *                           (e.g. "killed KILL": the OOM killer), stopped (ended by memhog),
 *                           unknown. The agent reaps the child within 1 s of its end.
 *
 * To add a verb: write a handler `static int verb_x(char *args, struct buf *out)`
 * returning 0 (ok) or -1 (err, message in out) and add it to VERBS[].
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <linux/usbdevice_fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
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

/* ---- USB endpoint fuzzing ------------------------------------------------- */

/*
 * usbepfuzz PATH COUNT SEED: sends malformed and random transfers to every
 * non-control endpoint of the usbfs device PATH (/dev/bus/usb/BBB/DDD). The
 * interfaces, alternate settings and endpoints come from the descriptors that
 * read() on PATH gives (device descriptor, then each configuration's; the active
 * configuration is asked for with GET_CONFIGURATION only if there are several).
 * Every interface is detached from its kernel driver and claimed; then COUNT
 * pseudo-random operations (fuzz_rand from SEED), each one ioctl outcome:
 *   - bulk/interrupt OUT (USBDEVFS_BULK, 20 ms) of 0..4096 random bytes, or of
 *     bytes shaped like HCI packets whose length fields lie (ACL, command, SCO);
 *   - bulk/interrupt IN (USBDEVFS_BULK, 20 ms) of 0..4096 bytes;
 *   - USBDEVFS_SETINTERFACE of a random interface to a random alternate setting
 *     (invalid ones too);
 *   - one isochronous URB, IN or OUT, of 1..8 packets (lengths up to the
 *     endpoint's packet size in the current alternate setting, sometimes one
 *     over it), reaped with a 50 ms deadline, else discarded (and reaped within
 *     1 s; if it never comes back no further isochronous URB is sent);
 *   - USBDEVFS_CLEAR_HALT of a random endpoint (sometimes a nonexistent one).
 * Operations whose endpoints the device lacks are not drawn. Bulk transfers go
 * only to addresses never declared isochronous or control. At the end every
 * interface with alternate settings is set back to 0, all are released and the
 * kernel drivers reattached (on the error paths too). Every wait is bounded: 20 ms
 * per bulk transfer, 50 ms + 1 s per URB, the kernel's 5 s per SET_INTERFACE or
 * CLEAR_HALT (control requests).
 * Payload: "sent N ok A stall B timeout C other D" (N = COUNT; stall = EPIPE,
 * timeout = ETIMEDOUT or a discarded URB, other = any other errno).
 */
#define EPF_MAX_EPS 64
#define EPF_MAX_IFS 32
#define EPF_MAX_PACKETS 8
#define EPF_BULK_MS 20          /* timeout of one bulk/interrupt transfer */
#define EPF_ISO_MS 50           /* wait for an isochronous URB before discarding it */
#define EPF_DISCARD_MS 1000     /* wait for a discarded URB to come back */

struct epf_ep {
    uint8_t addr, type, ifno, alt;  /* type: bmAttributes & 3 (1 iso, 2 bulk, 3 int) */
    uint16_t maxp;                  /* bytes per service interval */
};

struct epf_dev {
    int n_eps, n_ifs, claimed;      /* ifnum[0..claimed) are claimed */
    int config;                     /* bConfigurationValue of the parsed configuration */
    struct epf_ep eps[EPF_MAX_EPS]; /* every endpoint of every alternate setting */
    uint8_t ifnum[EPF_MAX_IFS], max_alt[EPF_MAX_IFS], cur_alt[EPF_MAX_IFS];
    uint8_t no_bulk[32];            /* bitmap: address declared iso or control somewhere */
};

struct epf_stats {
    long sent, ok, stall, timeout, other;
};

static void epf_tally(struct epf_stats *s, int e)
{
    s->sent++;
    if (e == 0)
        s->ok++;
    else if (e == EPIPE)
        s->stall++;
    else if (e == ETIMEDOUT)
        s->timeout++;
    else
        s->other++;
}

static int epf_if_index(const struct epf_dev *d, unsigned num)
{
    for (int i = 0; i < d->n_ifs; i++)
        if (d->ifnum[i] == num)
            return i;
    return -1;
}

/*
 * Parses p[0..len) as read() on a usbfs node gives it and keeps the interfaces
 * and endpoints of the configuration whose bConfigurationValue is want (the
 * first one if none is). Stops at the first malformed descriptor (bLength < 2
 * or past the end). Returns NULL, or what is missing.
 */
static const char *epf_parse(const uint8_t *p, size_t len, int want, struct epf_dev *d)
{
    const uint8_t *cfg = NULL;
    size_t cfg_len = 0, pos = 18;
    int cur = -1;                   /* ifnum[] index of the interface being read */
    uint8_t alt = 0;

    memset(d, 0, sizeof(*d));
    if (len < 18 || p[0] < 18 || p[1] != 1)
        return "no device descriptor";
    for (unsigned i = 0; i < p[17] && len - pos >= 9; i++) {
        size_t total = (size_t)p[pos + 2] | (size_t)p[pos + 3] << 8;
        if (p[pos] < 9 || p[pos + 1] != 2 || total < 9)
            break;
        if (total > len - pos)
            total = len - pos;
        if (!cfg || (p[pos + 5] == want && cfg[5] != want)) {
            cfg = p + pos;
            cfg_len = total;
        }
        pos += total;
    }
    if (!cfg)
        return "no configuration descriptor";
    d->config = cfg[5];
    for (size_t off = cfg[0]; off + 2 <= cfg_len;) {
        uint8_t bl = cfg[off], type = cfg[off + 1];
        if (bl < 2 || bl > cfg_len - off)
            break;
        if (type == 4) {            /* interface */
            cur = -1;
            if (bl >= 9) {
                alt = cfg[off + 3];
                cur = epf_if_index(d, cfg[off + 2]);
                if (cur < 0 && d->n_ifs < EPF_MAX_IFS) {
                    cur = d->n_ifs++;
                    d->ifnum[cur] = cfg[off + 2];
                }
                if (cur >= 0 && alt > d->max_alt[cur])
                    d->max_alt[cur] = alt;
            }
        } else if (type == 5 && bl >= 7 && cur >= 0) {  /* endpoint */
            uint8_t addr = cfg[off + 2], t = cfg[off + 3] & 3;
            unsigned w = cfg[off + 4] | cfg[off + 5] << 8;
            if (t == 0 || t == 1)
                d->no_bulk[addr / 8] |= (uint8_t)(1u << (addr % 8));
            if (t != 0 && d->n_eps < EPF_MAX_EPS) {
                struct epf_ep *e = &d->eps[d->n_eps++];
                e->addr = addr;
                e->type = t;
                e->ifno = d->ifnum[cur];
                e->alt = alt;
                e->maxp = (uint16_t)((w & 0x7ff) * (1 + ((w >> 11) & 3)));
            }
        }
        off += bl;
    }
    if (!d->n_ifs)
        return "no interface descriptor";
    return NULL;
}

/* "config 1, interfaces 0 1, highest alt 0 5, endpoints 0x81 0x82 0x02 0x83 0x03" */
static void epf_describe(const struct epf_dev *d, struct buf *b)
{
    buf_printf(b, "config %d, interfaces", d->config);
    for (int i = 0; i < d->n_ifs; i++)
        buf_printf(b, " %u", d->ifnum[i]);
    buf_str(b, ", highest alt");
    for (int i = 0; i < d->n_ifs; i++)
        buf_printf(b, " %u", d->max_alt[i]);
    buf_str(b, ", endpoints");
    for (int i = 0; i < d->n_eps; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= d->eps[j].addr == d->eps[i].addr;
        if (!seen)
            buf_printf(b, " 0x%02x", d->eps[i].addr);
    }
    if (!d->n_eps)
        buf_str(b, " none");
}

/* Bulk-safe: not declared iso/control anywhere, so USBDEVFS_BULK never hits one. */
static int epf_bulk_ok(const struct epf_dev *d, const struct epf_ep *e)
{
    return (e->type == 2 || e->type == 3) &&
           !(d->no_bulk[e->addr / 8] & (1u << (e->addr % 8)));
}

static int epf_match(const struct epf_dev *d, const struct epf_ep *e, int want_iso, int dir)
{
    return want_iso ? e->type == 1 : epf_bulk_ok(d, e) && (e->addr & 0x80) == dir;
}

/* How many eps[] entries are iso (want_iso) or bulk-safe in direction dir. */
static int epf_count(const struct epf_dev *d, int want_iso, int dir)
{
    int n = 0;
    for (int i = 0; i < d->n_eps; i++)
        n += epf_match(d, &d->eps[i], want_iso, dir);
    return n;
}

/* Index of a random one of them; the caller made sure there is one. */
static int epf_pick(const struct epf_dev *d, int want_iso, int dir, uint32_t *state)
{
    int n = epf_count(d, want_iso, dir), k;
    if (n == 0)
        return 0;
    k = (int)(fuzz_rand(state) % (uint32_t)n);
    for (int i = 0; i < d->n_eps; i++)
        if (epf_match(d, &d->eps[i], want_iso, dir) && k-- == 0)
            return i;
    return 0;
}

/* Packet size of endpoint addr in its interface's current alternate setting. */
static unsigned epf_cur_maxp(const struct epf_dev *d, uint8_t addr, uint8_t ifno)
{
    int k = epf_if_index(d, ifno);
    for (int i = 0; i < d->n_eps; i++)
        if (d->eps[i].addr == addr && d->eps[i].ifno == ifno && k >= 0 &&
            d->eps[i].alt == d->cur_alt[k])
            return d->eps[i].maxp;
    return 0;
}

static void epf_random(uint8_t *p, size_t n, uint32_t *state)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)fuzz_rand(state);
}

/* A random length 0..max, often an edge (0, 1, 63..65, 511..513, max). */
static unsigned epf_len(unsigned max, uint32_t *state)
{
    static const unsigned edges[] = {0, 1, 2, 3, 4, 63, 64, 65, 255, 256, 511, 512,
                                     513, 1021, 1024, 4095, 4096};
    unsigned n = fuzz_rand(state) % 4 ? fuzz_rand(state) % (max + 1)
                                      : edges[fuzz_rand(state) % 17];
    return n > max ? max : n;
}

/*
 * Fills p (4096 bytes) with HCI-shaped bytes whose length fields disagree with
 * the data; returns the length to send.
 */
static unsigned epf_shape(uint8_t *p, uint32_t *state)
{
    static const uint16_t huge[] = {0xffff, 0xfffe, 0x8000, 0x1001, 0x0400,
                                    0x03ff, 0x0100};
    static const uint16_t opcodes[] = {0x0c03, 0x1009, 0x1001, 0x1005, 0x0c13,
                                       0x200b, 0x200c, 0x0405, 0xfc00};
    unsigned kind = fuzz_rand(state) % 5, n = 0, dl, field;

    epf_random(p, 4096, state);
    switch (kind) {
    case 0:     /* one ACL packet, length field != data length */
    case 1:     /* an ACL header with a huge length field and little data */
    case 2: {   /* back-to-back ACL packets, the last one cut short or overlong */
        unsigned packets = kind == 2 ? 2 + fuzz_rand(state) % 7 : 1;
        for (unsigned k = 0; k < packets && n + 4 <= 4096; k++) {
            unsigned handle = fuzz_rand(state) % 4 ? fuzz_rand(state) % 4 : fuzz_rand(state);
            handle = (handle & 0x0fff) | (fuzz_rand(state) % 4 ? 0x2000u : fuzz_rand(state) << 12);
            dl = fuzz_rand(state) % (kind == 2 ? 64 : 4093);
            if (kind == 1) {
                field = huge[fuzz_rand(state) % 7];
                dl = fuzz_rand(state) % 64;
            } else if (k + 1 < packets) {
                field = dl;
            } else {
                field = fuzz_rand(state) % 2 && dl ? fuzz_rand(state) % dl
                                                   : dl + 1 + fuzz_rand(state) % 300;
            }
            if (n + 4 + dl > 4096)
                dl = 4096 - n - 4;
            p[n] = (uint8_t)handle;
            p[n + 1] = (uint8_t)(handle >> 8);
            p[n + 2] = (uint8_t)field;
            p[n + 3] = (uint8_t)(field >> 8);
            n += 4 + dl;
        }
        return n;
    }
    case 3: {   /* HCI command: plen != parameter bytes */
        unsigned op = fuzz_rand(state) % 2 ? opcodes[fuzz_rand(state) % 9]
                                           : fuzz_rand(state) & 0xffff;
        unsigned plen = fuzz_rand(state) & 0xff;
        dl = fuzz_rand(state) % 260;
        if (dl == plen)
            dl++;
        p[0] = (uint8_t)op;
        p[1] = (uint8_t)(op >> 8);
        p[2] = (uint8_t)plen;
        return 3 + dl;
    }
    default: {  /* SCO: 1-byte length != data length */
        unsigned handle = fuzz_rand(state) & 0x3fff, slen = fuzz_rand(state) & 0xff;
        dl = fuzz_rand(state) % 300;
        if (dl == slen)
            dl++;
        p[0] = (uint8_t)handle;
        p[1] = (uint8_t)(handle >> 8);
        p[2] = (uint8_t)slen;
        return 3 + dl;
    }
    }
}

/*
 * Waits for the URB just submitted: up to EPF_ISO_MS, then discards it and waits
 * up to EPF_DISCARD_MS more. Returns 0 or an errno like a synchronous transfer
 * (ETIMEDOUT if it had to be discarded); sets *stuck if it never came back.
 */
static int epf_reap(int fd, struct usbdevfs_urb *urb, int *stuck)
{
    struct timespec t0;
    long limit = EPF_ISO_MS;
    int discarded = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        void *done = NULL;
        if (ioctl(fd, USBDEVFS_REAPURBNDELAY, &done) == 0) {
            if (done != urb)
                continue;           /* not ours (cannot happen: one at a time) */
            if (discarded && (urb->status == -ENOENT || urb->status == -ECONNRESET))
                return ETIMEDOUT;
            return urb->status < 0 ? -urb->status : 0;
        }
        if (errno != EAGAIN && errno != EINTR) {
            int e = errno;
            if (!discarded)
                ioctl(fd, USBDEVFS_DISCARDURB, urb);
            *stuck = 1;
            return e;
        }
        long left = limit - ms_since(&t0);
        if (left <= 0) {
            if (discarded) {
                *stuck = 1;
                return ETIMEDOUT;
            }
            ioctl(fd, USBDEVFS_DISCARDURB, urb);  /* EINVAL if it just completed */
            discarded = 1;
            limit += EPF_DISCARD_MS;
            continue;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, (int)left);
    }
}

/* One isochronous URB to a random iso endpoint; returns 0 or an errno. */
static int epf_iso(int fd, struct epf_dev *d, struct usbdevfs_urb *urb, uint8_t *data,
                   uint32_t *state, int *stuck)
{
    const struct epf_ep *e = &d->eps[epf_pick(d, 1, 0, state)];
    unsigned maxp = epf_cur_maxp(d, e->addr, e->ifno);
    unsigned npk = 1 + fuzz_rand(state) % EPF_MAX_PACKETS;
    unsigned over = fuzz_rand(state) % 8 ? npk : fuzz_rand(state) % npk;
    unsigned total = 0;

    if (maxp > 3072)
        maxp = 3072;
    memset(urb, 0, sizeof(*urb) + EPF_MAX_PACKETS * sizeof(urb->iso_frame_desc[0]));
    for (unsigned k = 0; k < npk; k++) {
        unsigned l = k == over ? maxp + 1 + fuzz_rand(state) % 64
                               : fuzz_rand(state) % (maxp + 1);
        urb->iso_frame_desc[k].length = l;
        if (!(e->addr & 0x80)) {
            epf_random(data + total, l, state);
            if (l >= 3 && fuzz_rand(state) % 2) {   /* SCO header, wrong length */
                data[total] = (uint8_t)fuzz_rand(state);
                data[total + 1] = (uint8_t)(fuzz_rand(state) & 0x3f);
                data[total + 2] = (uint8_t)(l - 3 + 1 + fuzz_rand(state) % 250);
            }
        }
        total += l;
    }
    urb->type = USBDEVFS_URB_TYPE_ISO;
    urb->endpoint = e->addr;
    urb->flags = USBDEVFS_URB_ISO_ASAP;
    urb->buffer = data;
    urb->buffer_length = (int)total;
    urb->number_of_packets = (int)npk;
    urb->usercontext = urb;
    if (ioctl(fd, USBDEVFS_SUBMITURB, urb) < 0)
        return errno;
    return epf_reap(fd, urb, stuck);
}

/* Sets multi-alt interfaces back to 0, releases what is claimed, reattaches
   the kernel drivers of every interface; returns 0 or the set-alt errno. */
static int epf_release(int fd, struct epf_dev *d, unsigned *bad_if)
{
    int err = 0;
    for (int i = 0; i < d->claimed; i++) {
        struct usbdevfs_setinterface si = {.interface = d->ifnum[i], .altsetting = 0};
        if (d->max_alt[i] && ioctl(fd, USBDEVFS_SETINTERFACE, &si) < 0 && !err) {
            err = errno;
            *bad_if = d->ifnum[i];
        }
    }
    for (int i = 0; i < d->claimed; i++) {
        unsigned int ifno = d->ifnum[i];
        ioctl(fd, USBDEVFS_RELEASEINTERFACE, &ifno);
    }
    d->claimed = 0;
    for (int i = 0; i < d->n_ifs; i++) {
        struct usbdevfs_ioctl attach = {.ifno = d->ifnum[i], .ioctl_code = USBDEVFS_CONNECT};
        ioctl(fd, USBDEVFS_IOCTL, &attach);     /* EBUSY if bound already: fine */
    }
    return err;
}

static int verb_usbepfuzz(char *args, struct buf *out)
{
    static uint8_t desc[65536];
    static uint8_t data[EPF_MAX_PACKETS * (3072 + 64)];
    static struct epf_dev dev;
    static struct usbdevfs_urb *urb;    /* with room for EPF_MAX_PACKETS packets */
    char *seed_s = args ? split_last(args) : NULL;
    char *count_s = seed_s ? split_last(args) : NULL;
    unsigned long count, seed;
    struct epf_stats st = {0};
    struct stat sb;
    const char *why;
    size_t n = 0;
    int fd, want = -1, stuck = 0;
    uint32_t state;
    unsigned bad_if = 0;

    if (!count_s || !*args || parse_dec(count_s, 0, 1000000, &count) < 0 ||
        parse_dec(seed_s, 0, 0xffffffffUL, &seed) < 0)
        return fail(out, "usage: usbepfuzz PATH COUNT SEED (COUNT 0..1000000, "
                         "SEED 0..4294967295)");
    state = (uint32_t)seed;
    if (!urb)
        urb = calloc(1, sizeof(*urb) + EPF_MAX_PACKETS * sizeof(urb->iso_frame_desc[0]));
    if (!urb)
        return fail(out, "out of memory");
    fd = open(args, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return fail_errno(out, "open", args);
    if (fstat(fd, &sb) < 0 || !(S_ISREG(sb.st_mode) ||
                                (S_ISCHR(sb.st_mode) && major(sb.st_rdev) == 189))) {
        close(fd);
        return fail(out, "%s: not a usbfs device node (char 189:N) or a file", args);
    }
    memset(desc, 0, sizeof(desc));  /* the kernel skips, not zeroes, what it lacks */
    while (n < sizeof(desc)) {
        ssize_t r = read(fd, desc + n, sizeof(desc) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return fail(out, "read descriptors from %s: %s", args, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n >= 18 && desc[17] > 1) {   /* several configurations: which one is active */
        uint8_t value = 0;
        struct usbdevfs_ctrltransfer ct = {.bRequestType = 0x80, .bRequest = 8,
                                           .wLength = 1, .timeout = 500, .data = &value};
        if (ioctl(fd, USBDEVFS_CONTROL, &ct) == 1)
            want = value;
    }
    why = epf_parse(desc, n, want, &dev);
    if (why) {
        close(fd);
        return fail(out, "%s: %s (%zu bytes of descriptors)", args, why, n);
    }
    for (int i = 0; i < dev.n_ifs; i++) {
        struct usbdevfs_ioctl detach = {.ifno = dev.ifnum[i],
                                        .ioctl_code = USBDEVFS_DISCONNECT};
        ioctl(fd, USBDEVFS_IOCTL, &detach);    /* fails if no driver: fine */
    }
    for (int i = 0; i < dev.n_ifs; i++) {
        unsigned int ifno = dev.ifnum[i];
        if (ioctl(fd, USBDEVFS_CLAIMINTERFACE, &ifno) < 0) {
            int e = errno;
            struct buf what = {0};
            epf_release(fd, &dev, &bad_if);
            close(fd);
            epf_describe(&dev, &what);
            fail(out, "claim interface %u: %s (%.*s)", ifno, strerror(e), (int)what.len,
                 what.data);
            free(what.data);
            return -1;
        }
        dev.claimed = i + 1;
    }

    /* operation weights (of 32): OUT random, OUT shaped, IN, set alt, iso, clear halt */
    int has_out = epf_count(&dev, 0, 0) > 0, has_in = epf_count(&dev, 0, 0x80) > 0;
    for (unsigned long i = 0; i < count; i++) {
        int has_iso = !stuck && epf_count(&dev, 1, 0) > 0;
        unsigned w[6] = {has_out ? 9 : 0, has_out ? 8 : 0, has_in ? 6 : 0, 2,
                         has_iso ? 5 : 0, 2};
        unsigned sum = 0, op = 0, r;
        for (int k = 0; k < 6; k++)
            sum += w[k];
        r = fuzz_rand(&state) % sum;
        while (r >= w[op])
            r -= w[op++];
        if (op <= 2) {              /* bulk/interrupt OUT or IN */
            const struct epf_ep *e = &dev.eps[epf_pick(&dev, 0, op == 2 ? 0x80 : 0, &state)];
            struct usbdevfs_bulktransfer bt = {.ep = e->addr, .timeout = EPF_BULK_MS,
                                               .data = data};
            if (op == 0) {
                bt.len = epf_len(4096, &state);
                epf_random(data, bt.len, &state);
            } else if (op == 1) {
                bt.len = epf_shape(data, &state);
            } else {
                bt.len = epf_len(4096, &state);
            }
            epf_tally(&st, ioctl(fd, USBDEVFS_BULK, &bt) < 0 ? errno : 0);
        } else if (op == 3) {       /* set a (maybe invalid) alternate setting */
            int k = fuzz_rand(&state) % 16 ? (int)(fuzz_rand(&state) % (uint32_t)dev.n_ifs) : -1;
            struct usbdevfs_setinterface si;
            si.interface = k >= 0 ? dev.ifnum[k] : fuzz_rand(&state) % 40;
            si.altsetting = fuzz_rand(&state) % 8 || k < 0
                                ? fuzz_rand(&state) % (k >= 0 ? dev.max_alt[k] + 2u : 8u)
                                : fuzz_rand(&state) & 0xff;
            int e = ioctl(fd, USBDEVFS_SETINTERFACE, &si) < 0 ? errno : 0;
            if (!e && (k = epf_if_index(&dev, si.interface)) >= 0)
                dev.cur_alt[k] = (uint8_t)si.altsetting;
            epf_tally(&st, e);
        } else if (op == 4) {       /* isochronous URB */
            epf_tally(&st, epf_iso(fd, &dev, urb, data, &state, &stuck));
        } else {                    /* clear halt */
            unsigned int ep = dev.n_eps && fuzz_rand(&state) % 8
                                  ? dev.eps[fuzz_rand(&state) % (uint32_t)dev.n_eps].addr
                                  : fuzz_rand(&state) & 0xff;
            epf_tally(&st, ioctl(fd, USBDEVFS_CLEAR_HALT, &ep) < 0 ? errno : 0);
        }
    }
    int e = epf_release(fd, &dev, &bad_if);
    close(fd);                      /* kills a URB that never came back */
    if (e)
        return fail(out, "set interface %u back to alt 0: %s (after sent %ld ok %ld "
                         "stall %ld timeout %ld other %ld)", bad_if, strerror(e),
                    st.sent, st.ok, st.stall, st.timeout, st.other);
    buf_printf(out, "sent %ld ok %ld stall %ld timeout %ld other %ld", st.sent, st.ok,
               st.stall, st.timeout, st.other);
    return 0;
}

/* ---- Bluetooth: HCI and L2CAP sockets ----------------------------------- */

/*
 * The kernel's Bluetooth socket ABI, defined here (names and values as in the
 * Linux headers named) so the agent builds without libbluetooth-dev.
 */
#ifndef AF_BLUETOOTH
#define AF_BLUETOOTH 31                 /* include/linux/socket.h */
#endif
#ifndef SOL_BLUETOOTH
#define SOL_BLUETOOTH 274               /* include/linux/socket.h */
#endif
#define BTPROTO_L2CAP 0                 /* include/net/bluetooth/bluetooth.h */
#define BTPROTO_HCI 1
#define SOL_HCI 0
#define BT_SNDMTU 12
#define BT_RCVMTU 13
#define BDADDR_LE_PUBLIC 0x01
#define BDADDR_LE_RANDOM 0x02
#define HCI_FILTER 2                    /* include/net/bluetooth/hci_sock.h */
#define HCI_CHANNEL_RAW 0
#define HCIDEVUP _IOW('H', 201, int)
#define HCIGETDEVLIST _IOR('H', 210, int)
#define HCIGETDEVINFO _IOR('H', 211, int)
#define HCI_COMMAND_PKT 0x01            /* include/net/bluetooth/hci.h */
#define HCI_EVENT_PKT 0x04
#define HCI_EV_CMD_COMPLETE 0x0e
#define HCI_EV_CMD_STATUS 0x0f
#define HCI_EV_LE_META 0x3e
#define HCI_EV_LE_ADVERTISING_REPORT 0x02
#define HCI_EV_LE_EXT_ADV_REPORT 0x0d
#define HCI_UP 0                        /* bit number in hci_dev_info.flags */
#define HCI_OP_READ_BD_ADDR 0x1009
#define HCI_OP_LE_SET_SCAN_PARAM 0x200b
#define HCI_OP_LE_SET_SCAN_ENABLE 0x200c
#define HCI_OP_LE_SET_EXT_SCAN_PARAMS 0x2041
#define HCI_OP_LE_SET_EXT_SCAN_ENABLE 0x2042
#define HCI_ERR_UNKNOWN_COMMAND 0x01    /* Core spec, vol 1 part F */
#define HCI_ERR_COMMAND_DISALLOWED 0x0c
#define AD_NAME_SHORT 0x08              /* Core spec supplement, part A 1.2 */
#define AD_NAME_COMPLETE 0x09

/* bdaddr_t (bluetooth.h): least significant byte first. */
typedef struct {
    uint8_t b[6];
} bdaddr_t;

/* hci_sock.h */
struct sockaddr_hci {
    sa_family_t hci_family;
    unsigned short hci_dev;
    unsigned short hci_channel;
};

/* What setsockopt(SOL_HCI, HCI_FILTER) copies in: struct hci_ufilter in
 * hci_sock.h (the kernel's own struct hci_filter uses unsigned long). */
struct hci_filter {
    uint32_t type_mask;         /* bit N: packet type N */
    uint32_t event_mask[2];     /* bit N: event code N (0..63) */
    uint16_t opcode;            /* 0: every Command Complete/Status */
};

/* hci_sock.h */
struct hci_dev_stats {
    uint32_t err_rx, err_tx, cmd_tx, evt_rx, acl_tx, acl_rx, sco_tx, sco_rx,
        byte_rx, byte_tx;
};

/* hci_sock.h; the kernel fills type with (bus & 0x0f) | (dev_type << 4). */
struct hci_dev_info {
    uint16_t dev_id;
    char name[8];
    bdaddr_t bdaddr;
    uint32_t flags;
    uint8_t type;
    uint8_t features[8];
    uint32_t pkt_type;
    uint32_t link_policy;
    uint32_t link_mode;
    uint16_t acl_mtu;
    uint16_t acl_pkts;
    uint16_t sco_mtu;
    uint16_t sco_pkts;
    struct hci_dev_stats stat;
};

#define HCI_MAX_DEV 16          /* controllers asked for, as BlueZ does */

/* hci_sock.h (there dev_req[] is a flexible array member) */
struct hci_dev_req {
    uint16_t dev_id;
    uint32_t dev_opt;
};
struct hci_dev_list_req {
    uint16_t dev_num;
    struct hci_dev_req dev_req[HCI_MAX_DEV];
};

/* l2cap.h */
struct sockaddr_l2 {
    sa_family_t l2_family;
    uint16_t l2_psm;            /* little endian */
    bdaddr_t l2_bdaddr;
    uint16_t l2_cid;            /* little endian */
    uint8_t l2_bdaddr_type;
};

_Static_assert(sizeof(bdaddr_t) == 6, "bdaddr_t");
_Static_assert(sizeof(struct sockaddr_hci) == 6, "sockaddr_hci");
_Static_assert(sizeof(struct hci_filter) == 16 &&
               offsetof(struct hci_filter, opcode) == 12, "hci_ufilter");
_Static_assert(offsetof(struct hci_dev_info, bdaddr) == 10 &&
               offsetof(struct hci_dev_info, flags) == 16 &&
               offsetof(struct hci_dev_info, type) == 20 &&
               offsetof(struct hci_dev_info, pkt_type) == 32 &&
               offsetof(struct hci_dev_info, acl_mtu) == 44 &&
               offsetof(struct hci_dev_info, stat) == 52 &&
               sizeof(struct hci_dev_info) == 92, "hci_dev_info");
_Static_assert(sizeof(struct hci_dev_req) == 8 &&
               offsetof(struct hci_dev_list_req, dev_req) == 4, "hci_dev_list_req");
_Static_assert(offsetof(struct sockaddr_l2, l2_bdaddr) == 4 &&
               offsetof(struct sockaddr_l2, l2_cid) == 10 &&
               offsetof(struct sockaddr_l2, l2_bdaddr_type) == 12 &&
               sizeof(struct sockaddr_l2) == 14, "sockaddr_l2");

#define HCI_DEV_MAX 0xfffeUL            /* 0xffff is HCI_DEV_NONE */
#define HCI_CMD_TIMEOUT_MS 2000L        /* hcirtt and lescan's own commands */
#define HCI_MAX_TIMEOUT_MS 60000UL      /* hcicmd TIMEOUT_MS, lescan DURATION_MS */
#define HCI_RTT_MAX_COUNT 100000UL
#define SCAN_MAX 256                    /* distinct advertisers kept by lescan */
#define L2_CONNECT_TIMEOUT_MS 10000L
#define L2_STALL_TIMEOUT_MS 10000L      /* longest wait for room to send one SDU */
#define L2_ANSWER_TIMEOUT_MS 30000L
#define L2_MAX_TOTAL 1000000000UL
#define L2_MAX_SDU 65535UL

/*
 * Splits args at single spaces into at most n fields; returns how many there
 * are (0 for none), or -1 if there are more than n.
 */
static int split_fields(char *args, char **f, int n)
{
    int k = 0;
    char *s = args;
    if (!s || !*s)
        return 0;
    for (;;) {
        if (k == n)
            return -1;
        f[k++] = s;
        s = split_word(s);
        if (!s)
            return k;
    }
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses decimal, or hex with 0x, in [min, max] (max < 2^32); 0, or -1. */
static int parse_num(const char *s, unsigned long min, unsigned long max,
                     unsigned long *value)
{
    unsigned long n = 0;
    if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
        return parse_dec(s, min, max, value);
    if (!s[2])
        return -1;
    for (s += 2; *s; s++) {
        int d = hex_digit(*s);
        if (d < 0)
            return -1;
        n = n * 16 + (unsigned long)d;
        if (n > max)
            return -1;
    }
    if (n < min)
        return -1;
    *value = n;
    return 0;
}

/* Parses "-" (no bytes) or an even number of hex digits, at most size bytes. */
static int parse_hex(const char *s, uint8_t *p, size_t size, size_t *len)
{
    size_t n = strlen(s);
    if (!strcmp(s, "-")) {
        *len = 0;
        return 0;
    }
    if (n == 0 || n % 2 || n / 2 > size)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        p[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return 0;
}

/* Parses "aa:bb:cc:dd:ee:ff" (most significant byte first) into a bdaddr_t. */
static int parse_bdaddr(const char *s, bdaddr_t *a)
{
    if (strlen(s) != 17)
        return -1;
    for (int i = 0; i < 6; i++) {
        int hi = hex_digit(s[3 * i]), lo = hex_digit(s[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
            return -1;
        a->b[5 - i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* Formats a bdaddr_t as "aa:bb:cc:dd:ee:ff" (most significant byte first). */
static void format_bdaddr(const uint8_t b[6], char s[18])
{
    snprintf(s, 18, "%02x:%02x:%02x:%02x:%02x:%02x", b[5], b[4], b[3], b[2],
             b[1], b[0]);
}

static long long ns_between(const struct timespec *a, const struct timespec *b)
{
    return (long long)(b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

/* A Bluetooth socket; on failure out says why ("no bluetooth: ..." if the
 * kernel has no AF_BLUETOOTH or not this protocol). */
static int bt_socket(int type, int proto, struct buf *out)
{
    int fd = socket(AF_BLUETOOTH, type | SOCK_CLOEXEC, proto);
    if (fd >= 0)
        return fd;
    if (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT || errno == ESOCKTNOSUPPORT)
        fail(out, "no bluetooth: socket(AF_BLUETOOTH, %s): %s",
             proto == BTPROTO_HCI ? "BTPROTO_HCI" : "BTPROTO_L2CAP", strerror(errno));
    else
        fail(out, "socket(AF_BLUETOOTH): %s", strerror(errno));
    return -1;
}

static int hci_fail(struct buf *out, unsigned long dev, const char *what, int e)
{
    if (e == ENODEV)
        return fail(out, "hci%lu: no such controller", dev);
    return fail(out, "%s hci%lu: %s", what, dev, strerror(e));
}

/* HCIGETDEVINFO for hciDEV. */
static int hci_devinfo(unsigned long dev, struct hci_dev_info *di, struct buf *out)
{
    int fd = bt_socket(SOCK_RAW, BTPROTO_HCI, out);
    if (fd < 0)
        return -1;
    memset(di, 0, sizeof(*di));
    di->dev_id = (uint16_t)dev;
    int r = ioctl(fd, HCIGETDEVINFO, di);
    int e = errno;
    close(fd);
    if (r < 0)
        return hci_fail(out, dev, "HCIGETDEVINFO", e);
    return 0;
}

static int cmp_dev_req(const void *a, const void *b)
{
    const struct hci_dev_req *x = a, *y = b;
    return (int)x->dev_id - (int)y->dev_id;
}

static int verb_hcilist(char *args, struct buf *out)
{
    struct hci_dev_list_req dl;
    if (args && *args)
        return fail(out, "usage: hcilist");
    int fd = bt_socket(SOCK_RAW, BTPROTO_HCI, out);
    if (fd < 0)
        return -1;
    memset(&dl, 0, sizeof(dl));
    dl.dev_num = HCI_MAX_DEV;
    if (ioctl(fd, HCIGETDEVLIST, &dl) < 0) {
        int e = errno;
        close(fd);
        return fail(out, "HCIGETDEVLIST: %s", strerror(e));
    }
    size_t n = dl.dev_num < HCI_MAX_DEV ? dl.dev_num : HCI_MAX_DEV;
    qsort(dl.dev_req, n, sizeof(dl.dev_req[0]), cmp_dev_req);
    for (size_t i = 0; i < n; i++) {
        struct hci_dev_info di;
        char addr[18];
        memset(&di, 0, sizeof(di));
        di.dev_id = dl.dev_req[i].dev_id;
        if (ioctl(fd, HCIGETDEVINFO, &di) < 0) {
            int e = errno;
            if (e == ENODEV)
                continue; /* unregistered meanwhile */
            close(fd);
            return hci_fail(out, di.dev_id, "HCIGETDEVINFO", e);
        }
        format_bdaddr(di.bdaddr.b, addr);
        buf_printf(out, "%shci%u %s 0x%x", out->len ? "\n" : "", (unsigned)di.dev_id,
                   addr, (unsigned)di.flags);
    }
    close(fd);
    return 0;
}

static int verb_hciup(char *args, struct buf *out)
{
    unsigned long dev;
    if (parse_dec(args, 0, HCI_DEV_MAX, &dev) < 0)
        return fail(out, "usage: hciup DEV (DEV: N of hciN)");
    int fd = bt_socket(SOCK_RAW, BTPROTO_HCI, out);
    if (fd < 0)
        return -1;
    int r = ioctl(fd, HCIDEVUP, (unsigned long)dev);
    int e = errno;
    close(fd);
    if (r < 0 && e != EALREADY)
        return hci_fail(out, dev, "HCIDEVUP", e);
    buf_str(out, "up");
    return 0;
}

static int verb_hciinfo(char *args, struct buf *out)
{
    unsigned long dev;
    struct hci_dev_info di;
    char addr[18];
    if (parse_dec(args, 0, HCI_DEV_MAX, &dev) < 0)
        return fail(out, "usage: hciinfo DEV (DEV: N of hciN)");
    if (hci_devinfo(dev, &di, out) < 0)
        return -1;
    format_bdaddr(di.bdaddr.b, addr);
    buf_printf(out, "name %.*s addr %s flags 0x%x up %u bus %u type %u acl_mtu %u "
               "acl_pkts %u sco_mtu %u sco_pkts %u",
               (int)strnlen(di.name, sizeof(di.name)), di.name, addr,
               (unsigned)di.flags, (unsigned)(di.flags >> HCI_UP & 1),
               (unsigned)(di.type & 0x0f), (unsigned)(di.type >> 4),
               (unsigned)di.acl_mtu, (unsigned)di.acl_pkts, (unsigned)di.sco_mtu,
               (unsigned)di.sco_pkts);
    return 0;
}

/*
 * A raw HCI socket bound to hciDEV that receives only HCI events: Command
 * Complete and Command Status, plus LE Meta if le_meta.
 */
static int hci_open_raw(unsigned long dev, int le_meta, struct buf *out)
{
    struct sockaddr_hci a = {.hci_family = AF_BLUETOOTH, .hci_dev = (unsigned short)dev,
                             .hci_channel = HCI_CHANNEL_RAW};
    struct hci_filter f = {.type_mask = 1u << HCI_EVENT_PKT};
    const uint8_t events[] = {HCI_EV_CMD_COMPLETE, HCI_EV_CMD_STATUS, HCI_EV_LE_META};
    int fd = bt_socket(SOCK_RAW, BTPROTO_HCI, out);
    if (fd < 0)
        return -1;
    for (size_t i = 0; i < (le_meta ? 3u : 2u); i++)
        f.event_mask[events[i] >> 5] |= 1u << (events[i] & 31);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(fd);
        return hci_fail(out, dev, "bind", e);
    }
    if (setsockopt(fd, SOL_HCI, HCI_FILTER, &f, sizeof(f)) < 0) {
        int e = errno;
        close(fd);
        return fail(out, "setsockopt HCI_FILTER: %s", strerror(e));
    }
    return fd;
}

static int hci_send_cmd(int fd, unsigned opcode, const uint8_t *params, size_t plen)
{
    uint8_t pkt[4 + 255];
    ssize_t w;
    if (plen > 255) {
        errno = EINVAL;
        return -1;
    }
    pkt[0] = HCI_COMMAND_PKT;
    pkt[1] = opcode & 0xff;     /* HCI is little endian */
    pkt[2] = opcode >> 8 & 0xff;
    pkt[3] = (uint8_t)plen;
    if (plen)
        memcpy(pkt + 4, params, plen);
    do
        w = write(fd, pkt, 4 + plen);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;
    if ((size_t)w != 4 + plen) {
        errno = EIO;
        return -1;
    }
    return 0;
}

static int hci_send_fail(struct buf *out, unsigned long dev, unsigned opcode)
{
    if (errno == ENETDOWN)
        return fail(out, "hci%lu is down (hciup %lu first)", dev, dev);
    return fail(out, "send command 0x%04x to hci%lu: %s", opcode, dev, strerror(errno));
}

/* One HCI event from a raw socket. */
struct hci_event {
    uint8_t pkt[1024];          /* packet type, event code, length, parameters */
    uint8_t code;
    const uint8_t *params;
    size_t len;                 /* parameter bytes present (never past the read) */
};

/* Waits until timeout_ms after t0 for one event: 1 (got one), 0 (timed out),
 * -1 (error, errno set). */
static int hci_read_event(int fd, const struct timespec *t0, long timeout_ms,
                          struct hci_event *ev)
{
    for (;;) {
        long left = timeout_ms - ms_since(t0);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            if (left <= 0)
                return 0;
            continue;
        }
        ssize_t n = recv(fd, ev->pkt, sizeof(ev->pkt), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EPIPE; /* socket closed (controller gone) */
            return -1;
        }
        if (n < 3 || ev->pkt[0] != HCI_EVENT_PKT)
            continue;
        ev->code = ev->pkt[1];
        ev->params = ev->pkt + 3;
        ev->len = ev->pkt[2] < (size_t)n - 3 ? ev->pkt[2] : (size_t)n - 3;
        return 1;
    }
}

/* What lescan has seen, per (address, address type). */
struct advert {
    bdaddr_t addr;
    uint8_t type;               /* 0 public, 1 random, 2/3 identity, 0xff anonymous */
    int8_t rssi;                /* of the latest report; 127: not available */
    uint8_t name_kind;          /* 0 none, AD_NAME_SHORT or AD_NAME_COMPLETE */
    uint8_t name_len;
    uint8_t name[248];
};

struct scan {
    size_t n;
    struct advert a[SCAN_MAX];
};

static void scan_event(struct scan *s, const uint8_t *p, size_t len);

enum { HCI_WAIT_TIMEOUT = 0, HCI_WAIT_COMPLETE = 1, HCI_WAIT_STATUS = 2 };

/*
 * Waits until timeout_ms after t0 for the Command Complete or Command Status
 * event of opcode: HCI_WAIT_COMPLETE (return parameters from ev->params + 3,
 * ev->len - 3 bytes), HCI_WAIT_STATUS (status in ev->params[0]),
 * HCI_WAIT_TIMEOUT, or -1 (errno set). LE Meta events read meanwhile go to
 * scan if it is not NULL; other events are dropped.
 */
static int hci_wait_cmd(int fd, unsigned opcode, const struct timespec *t0,
                        long timeout_ms, struct hci_event *ev, struct scan *scan)
{
    for (;;) {
        int r = hci_read_event(fd, t0, timeout_ms, ev);
        if (r <= 0)
            return r < 0 ? -1 : HCI_WAIT_TIMEOUT;
        /* Command Complete: Num_HCI_Command_Packets, Command_Opcode, return params */
        if (ev->code == HCI_EV_CMD_COMPLETE && ev->len >= 3 &&
            (unsigned)(ev->params[1] | ev->params[2] << 8) == opcode)
            return HCI_WAIT_COMPLETE;
        /* Command Status: Status, Num_HCI_Command_Packets, Command_Opcode */
        if (ev->code == HCI_EV_CMD_STATUS && ev->len >= 4 &&
            (unsigned)(ev->params[2] | ev->params[3] << 8) == opcode)
            return HCI_WAIT_STATUS;
        if (ev->code == HCI_EV_LE_META && scan)
            scan_event(scan, ev->params, ev->len);
    }
}

static int verb_hcicmd(char *args, struct buf *out)
{
    char *f[4];
    unsigned long dev, opcode, timeout_ms;
    uint8_t params[255];
    size_t plen;
    struct hci_event ev;
    struct timespec t0;
    int rc = 0;

    if (split_fields(args, f, 4) != 4 || parse_dec(f[0], 0, HCI_DEV_MAX, &dev) < 0 ||
        parse_num(f[1], 1, 0xffff, &opcode) < 0 ||
        parse_hex(f[2], params, sizeof(params), &plen) < 0 ||
        parse_dec(f[3], 1, HCI_MAX_TIMEOUT_MS, &timeout_ms) < 0)
        return fail(out, "usage: hcicmd DEV OPCODE PARAMS TIMEOUT_MS (OPCODE 0x0001..0xffff, "
                    "PARAMS hex (at most 255 bytes) or -, TIMEOUT_MS 1..60000)");
    int fd = hci_open_raw(dev, 0, out);
    if (fd < 0)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (hci_send_cmd(fd, (unsigned)opcode, params, plen) < 0) {
        rc = hci_send_fail(out, dev, (unsigned)opcode);
    } else {
        int r = hci_wait_cmd(fd, (unsigned)opcode, &t0, (long)timeout_ms, &ev, NULL);
        if (r < 0) {
            rc = fail(out, "read from hci%lu: %s", dev, strerror(errno));
        } else if (r == HCI_WAIT_TIMEOUT) {
            rc = fail(out, "no Command Complete/Status for 0x%04lx within %lu ms", opcode,
                      timeout_ms);
        } else if (r == HCI_WAIT_STATUS) {
            buf_printf(out, "status 0x%02x", ev.params[0]);
        } else {
            buf_str(out, "complete ");
            for (size_t i = 3; i < ev.len; i++)
                buf_printf(out, "%02x", ev.params[i]);
            if (ev.len <= 3)
                buf_str(out, "-");
        }
    }
    close(fd);
    return rc;
}

static int verb_hcirtt(char *args, struct buf *out)
{
    char *f[2];
    unsigned long dev, count;
    struct hci_event ev;
    int rc = 0;

    if (split_fields(args, f, 2) != 2 || parse_dec(f[0], 0, HCI_DEV_MAX, &dev) < 0 ||
        parse_dec(f[1], 1, HCI_RTT_MAX_COUNT, &count) < 0)
        return fail(out, "usage: hcirtt DEV COUNT (COUNT 1..100000)");
    int fd = hci_open_raw(dev, 0, out);
    if (fd < 0)
        return -1;
    for (unsigned long i = 0; i < count && rc == 0; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (hci_send_cmd(fd, HCI_OP_READ_BD_ADDR, NULL, 0) < 0) {
            rc = hci_send_fail(out, dev, HCI_OP_READ_BD_ADDR);
            break;
        }
        int r = hci_wait_cmd(fd, HCI_OP_READ_BD_ADDR, &t0, HCI_CMD_TIMEOUT_MS, &ev, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r < 0)
            rc = fail(out, "round trip %lu: read from hci%lu: %s", i + 1, dev,
                      strerror(errno));
        else if (r == HCI_WAIT_TIMEOUT)
            rc = fail(out, "round trip %lu of %lu: no answer to HCI_Read_BD_ADDR "
                      "within %ld ms", i + 1, count, HCI_CMD_TIMEOUT_MS);
        else if (r == HCI_WAIT_STATUS || ev.len < 4 || ev.params[3] != 0)
            rc = fail(out, "round trip %lu: HCI_Read_BD_ADDR failed: status 0x%02x",
                      i + 1, r == HCI_WAIT_STATUS ? ev.params[0]
                                                  : ev.len >= 4 ? ev.params[3] : 0xff);
        else
            buf_printf(out, "%s%lld", i ? "\n" : "", ns_between(&t0, &t1));
    }
    close(fd);
    return rc;
}

/* Keeps the local name from AD structures (LEN TYPE DATA...): a complete name
 * replaces anything, a shortened one only a shortened one. */
static void ad_name(struct advert *a, const uint8_t *ad, size_t len)
{
    size_t i = 0;
    while (i + 1 < len) {
        size_t n = ad[i]; /* type + data bytes */
        if (n == 0 || n > len - i - 1)
            break; /* zero padding, or a structure cut short */
        uint8_t t = ad[i + 1];
        if (t == AD_NAME_COMPLETE || (t == AD_NAME_SHORT && a->name_kind != AD_NAME_COMPLETE)) {
            size_t k = n - 1 < sizeof(a->name) ? n - 1 : sizeof(a->name);
            memcpy(a->name, ad + i + 2, k);
            a->name_len = (uint8_t)k;
            a->name_kind = t;
        }
        i += n + 1;
    }
}

static void scan_report(struct scan *s, const uint8_t *addr, uint8_t type, int8_t rssi,
                        const uint8_t *ad, size_t ad_len)
{
    struct advert *a = NULL;
    for (size_t i = 0; i < s->n && !a; i++)
        if (s->a[i].type == type && !memcmp(s->a[i].addr.b, addr, 6))
            a = &s->a[i];
    if (!a) {
        if (s->n == SCAN_MAX)
            return;
        a = &s->a[s->n++];
        memset(a, 0, sizeof(*a));
        memcpy(a->addr.b, addr, 6);
        a->type = type;
    }
    a->rssi = rssi;
    ad_name(a, ad, ad_len);
}

/*
 * Takes the reports out of one LE Meta event (p: its parameters, len bytes).
 * Reports follow each other whole (as Linux and controllers lay them out);
 * one that does not fit in len ends the event.
 */
static void scan_event(struct scan *s, const uint8_t *p, size_t len)
{
    size_t off = 2; /* Subevent_Code, Num_Reports */
    if (len < 2)
        return;
    for (unsigned r = 0; r < p[1]; r++) {
        if (p[0] == HCI_EV_LE_ADVERTISING_REPORT) {
            /* Event_Type, Address_Type, Address[6], Data_Length, Data, RSSI */
            if (len - off < 9)
                return;
            size_t dlen = p[off + 8];
            if (len - off - 9 < dlen + 1)
                return;
            scan_report(s, p + off + 2, p[off + 1], (int8_t)p[off + 9 + dlen], p + off + 9,
                        dlen);
            off += 10 + dlen;
        } else if (p[0] == HCI_EV_LE_EXT_ADV_REPORT) {
            /* Event_Type[2], Address_Type, Address[6], Primary_PHY, Secondary_PHY,
             * Advertising_SID, TX_Power, RSSI, Periodic_Advertising_Interval[2],
             * Direct_Address_Type, Direct_Address[6], Data_Length, Data */
            if (len - off < 24)
                return;
            size_t dlen = p[off + 23];
            if (len - off - 24 < dlen)
                return;
            scan_report(s, p + off + 3, p[off + 2], (int8_t)p[off + 13], p + off + 24,
                        dlen);
            off += 24 + dlen;
        } else {
            return;
        }
    }
}

static int cmp_advert(const void *x, const void *y)
{
    const struct advert *a = x, *b = y;
    for (int i = 5; i >= 0; i--)
        if (a->addr.b[i] != b->addr.b[i])
            return (int)a->addr.b[i] - (int)b->addr.b[i];
    return (int)a->type - (int)b->type;
}

/* "ADDR ADDR_TYPE RSSI NAME" lines, sorted by address. */
static void scan_format(struct scan *s, struct buf *out)
{
    qsort(s->a, s->n, sizeof(s->a[0]), cmp_advert);
    for (size_t i = 0; i < s->n; i++) {
        const struct advert *a = &s->a[i];
        static const char *const types[] = {"public", "random", "public-id", "random-id"};
        char addr[18], type[12], name[sizeof(a->name) + 1];
        format_bdaddr(a->addr.b, addr);
        if (a->type < 4)
            snprintf(type, sizeof(type), "%s", types[a->type]);
        else if (a->type == 0xff)
            snprintf(type, sizeof(type), "anon");
        else
            snprintf(type, sizeof(type), "0x%02x", a->type);
        for (size_t k = 0; k < a->name_len; k++) {
            uint8_t c = a->name[k];
            name[k] = c == ' ' ? '_' : (c > ' ' && c < 0x7f) ? (char)c : '?';
        }
        name[a->name_len] = '\0';
        buf_printf(out, "%s%s %s %d %s", i ? "\n" : "", addr, type, (int)a->rssi,
                   a->name_len ? name : "-");
    }
}

/* Sends one command of lescan's and waits for it: its HCI status (0..255), or
 * -1 with out set. A nonzero status also leaves a message in out. */
static int scan_cmd(int fd, unsigned long dev, unsigned opcode, const char *name,
                    const uint8_t *p, size_t n, struct scan *s, struct buf *out)
{
    struct hci_event ev;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (hci_send_cmd(fd, opcode, p, n) < 0)
        return hci_send_fail(out, dev, opcode);
    int r = hci_wait_cmd(fd, opcode, &t0, HCI_CMD_TIMEOUT_MS, &ev, s);
    if (r < 0)
        return fail(out, "%s (0x%04x): read from hci%lu: %s", name, opcode, dev,
                    strerror(errno));
    if (r == HCI_WAIT_TIMEOUT)
        return fail(out, "%s (0x%04x): no answer within %ld ms", name, opcode,
                    HCI_CMD_TIMEOUT_MS);
    int status = r == HCI_WAIT_STATUS ? ev.params[0] : ev.len > 3 ? ev.params[3] : 0xff;
    if (status)
        fail(out, "%s (0x%04x) failed: status 0x%02x", name, opcode, status);
    return status;
}

static int verb_lescan(char *args, struct buf *out)
{
    /* active, interval = window = 10 ms (16 x 0.625 ms), own address public,
     * accept all advertisers */
    static const uint8_t params[] = {0x01, 0x10, 0x00, 0x10, 0x00, 0x00, 0x00};
    static const uint8_t enable[] = {0x01, 0x00};   /* on, duplicates not filtered */
    static const uint8_t disable[] = {0x00, 0x00};
    /* own address public, accept all, 1M PHY only: active, 10 ms, 10 ms */
    static const uint8_t ext_params[] = {0x00, 0x00, 0x01, 0x01, 0x10, 0x00, 0x10, 0x00};
    /* on, duplicates not filtered, duration 0 (until disabled), period 0 */
    static const uint8_t ext_enable[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t ext_disable[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    static struct scan scan;
    char *f[2];
    unsigned long dev, duration_ms;
    struct hci_event ev;
    struct timespec t0;
    int ext = 0, st, rc = 0;

    if (split_fields(args, f, 2) != 2 || parse_dec(f[0], 0, HCI_DEV_MAX, &dev) < 0 ||
        parse_dec(f[1], 1, HCI_MAX_TIMEOUT_MS, &duration_ms) < 0)
        return fail(out, "usage: lescan DEV DURATION_MS (DURATION_MS 1..60000)");
    int fd = hci_open_raw(dev, 1, out);
    if (fd < 0)
        return -1;
    scan.n = 0;
    st = scan_cmd(fd, dev, HCI_OP_LE_SET_SCAN_PARAM, "LE Set Scan Parameters", params,
                  sizeof(params), &scan, out);
    if (st == 0)
        st = scan_cmd(fd, dev, HCI_OP_LE_SET_SCAN_ENABLE, "LE Set Scan Enable", enable,
                      sizeof(enable), &scan, out);
    if (st == HCI_ERR_UNKNOWN_COMMAND || st == HCI_ERR_COMMAND_DISALLOWED) {
        int legacy = st;
        ext = 1;
        st = scan_cmd(fd, dev, HCI_OP_LE_SET_EXT_SCAN_PARAMS, "LE Set Extended Scan Parameters",
                      ext_params, sizeof(ext_params), &scan, out);
        if (st == 0)
            st = scan_cmd(fd, dev, HCI_OP_LE_SET_EXT_SCAN_ENABLE, "LE Set Extended Scan Enable",
                          ext_enable, sizeof(ext_enable), &scan, out);
        if (st > 0)
            buf_printf(out, " (after the legacy scan commands failed: status 0x%02x)", legacy);
    }
    if (st != 0) {
        close(fd);
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int r = hci_read_event(fd, &t0, (long)duration_ms, &ev);
        if (r == 0)
            break;
        if (r < 0) {
            rc = fail(out, "read from hci%lu: %s", dev, strerror(errno));
            break;
        }
        if (ev.code == HCI_EV_LE_META)
            scan_event(&scan, ev.params, ev.len);
    }
    /* best effort: stop scanning whatever happened */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (hci_send_cmd(fd, ext ? HCI_OP_LE_SET_EXT_SCAN_ENABLE : HCI_OP_LE_SET_SCAN_ENABLE,
                     ext ? ext_disable : disable,
                     ext ? sizeof(ext_disable) : sizeof(disable)) == 0)
        hci_wait_cmd(fd, ext ? HCI_OP_LE_SET_EXT_SCAN_ENABLE : HCI_OP_LE_SET_SCAN_ENABLE,
                     &t0, 1000, &ev, NULL);
    close(fd);
    if (rc < 0)
        return rc;
    out->len = 0; /* drop the message of a legacy command that failed */
    scan_format(&scan, out);
    return 0;
}

/* Sends one SDU, waiting at most L2_STALL_TIMEOUT_MS for credits or buffer
 * space; 0, or -1 with errno (ETIMEDOUT: no room in time). */
static int l2_send_sdu(int fd, const uint8_t *p, size_t n)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0) {
            if ((size_t)w == n)
                return 0;
            errno = EIO; /* a SOCK_SEQPACKET send is all or nothing */
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -1;
        long left = L2_STALL_TIMEOUT_MS - ms_since(&t0);
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, (int)left);
    }
}

/* Waits (connect already started) until the channel is up, at most
 * L2_CONNECT_TIMEOUT_MS: its outgoing MTU, or -1 with errno. */
static int l2_wait_connected(int fd)
{
    struct timespec t0;
    int hup = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        uint16_t mtu = 0;
        int err = 0;
        socklen_t len = sizeof(mtu);
        /* BT_SNDMTU answers ENOTCONN until the channel is connected */
        if (getsockopt(fd, SOL_BLUETOOTH, BT_SNDMTU, &mtu, &len) == 0)
            return mtu;
        if (errno != ENOTCONN)
            return -1;
        len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
            errno = err;
            return -1;
        }
        if (hup) {
            errno = ECONNRESET; /* closed without an error code */
            return -1;
        }
        long left = L2_CONNECT_TIMEOUT_MS - ms_since(&t0);
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, left < 100 ? (int)left : 100) > 0 && (pfd.revents & POLLHUP))
            hup = 1;
    }
}

/* Waits at most L2_ANSWER_TIMEOUT_MS for one SDU (NUL-terminated in ans). */
static ssize_t l2_recv_answer(int fd, char *ans, size_t size)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t r = recv(fd, ans, size - 1, MSG_DONTWAIT);
        if (r >= 0) {
            ans[r] = '\0';
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -1;
        long left = L2_ANSWER_TIMEOUT_MS - ms_since(&t0);
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, (int)left);
    }
}

/* The body of l2send on an L2CAP socket; the caller closes it. */
static int l2_transfer(int fd, const struct hci_dev_info *di, const struct sockaddr_l2 *peer,
                       const char *peer_s, unsigned long total, unsigned long sdu,
                       struct buf *out)
{
    static uint8_t data[L2_MAX_SDU + 256];
    struct sockaddr_l2 local = {.l2_family = AF_BLUETOOTH, .l2_bdaddr = di->bdaddr,
                                .l2_bdaddr_type = BDADDR_LE_PUBLIC};
    struct timeval tv = {.tv_sec = L2_STALL_TIMEOUT_MS / 1000};
    struct timespec t0, t1;
    uint8_t head[8];
    char local_s[18], ans[64];
    unsigned long sent = 0;
    unsigned psm = le16toh(peer->l2_psm);

    /* bounds blocking waits too, should a kernel ignore MSG_DONTWAIT somewhere */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    format_bdaddr(di->bdaddr.b, local_s);
    if (bind(fd, (const struct sockaddr *)&local, sizeof(local)) < 0)
        return fail(out, "bind to %s (LE public): %s", local_s, strerror(errno));
    if (connect(fd, (const struct sockaddr *)peer, sizeof(*peer)) < 0 &&
        errno != EINPROGRESS && errno != EAGAIN)
        return fail(out, "connect to %s psm 0x%02x: %s", peer_s, psm, strerror(errno));
    int mtu = l2_wait_connected(fd);
    if (mtu < 0 && errno == ETIMEDOUT)
        return fail(out, "connect to %s psm 0x%02x: not connected within %ld ms", peer_s,
                    psm, L2_CONNECT_TIMEOUT_MS);
    if (mtu < 0)
        return fail(out, "connect to %s psm 0x%02x: %s", peer_s, psm, strerror(errno));
    if (sdu > (unsigned long)mtu)
        return fail(out, "SDU %lu is larger than the channel's outgoing MTU %d", sdu, mtu);
    if ((unsigned long)mtu < sizeof(head))
        return fail(out, "the channel's outgoing MTU %d is below 8 bytes", mtu);

    for (int i = 0; i < 8; i++)
        head[i] = (uint8_t)((uint64_t)total >> (56 - 8 * i)); /* big endian u64 */
    if (l2_send_sdu(fd, head, sizeof(head)) < 0)
        return fail(out, "send the 8-byte length SDU: %s", strerror(errno));
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)i; /* byte k of the stream is k mod 256 */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (sent < total) {
        size_t n = total - sent < sdu ? total - sent : sdu;
        if (l2_send_sdu(fd, data + (sent & 0xff), n) < 0)
            return fail(out, "send after %lu of %lu bytes: %s", sent, total,
                        errno == ETIMEDOUT ? "no credits or buffer space for 10 s"
                                           : strerror(errno));
        sent += n;
    }
    ssize_t r = l2_recv_answer(fd, ans, sizeof(ans));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0 && errno == ETIMEDOUT)
        return fail(out, "sent %lu bytes; no answer from the peer within %ld ms", sent,
                    L2_ANSWER_TIMEOUT_MS);
    if (r < 0)
        return fail(out, "sent %lu bytes; waiting for the answer: %s", sent, strerror(errno));
    uint16_t probe;
    socklen_t plen = sizeof(probe);
    if (r == 0 && getsockopt(fd, SOL_BLUETOOTH, BT_SNDMTU, &probe, &plen) < 0)
        return fail(out, "sent %lu bytes; the peer closed the channel without answering",
                    sent);
    while (r > 0 && (ans[r - 1] == ' ' || ans[r - 1] == '\r' || ans[r - 1] == '\n' ||
                     ans[r - 1] == '\0'))
        ans[--r] = '\0'; /* trailing whitespace or NULs */
    unsigned long long acked = 0;
    int ok = r > 0 && r <= 20;
    for (ssize_t i = 0; ok && i < r; i++)
        ok = ans[i] >= '0' && ans[i] <= '9';
    if (ok) {
        errno = 0;
        acked = strtoull(ans, NULL, 10);
        ok = errno == 0;
    }
    if (!ok) {
        for (ssize_t i = 0; i < r; i++)
            if (ans[i] < ' ' || ans[i] >= 0x7f)
                ans[i] = '?';
        return fail(out, "sent %lu bytes; the peer's answer is not a decimal count: \"%.40s\"",
                    sent, ans);
    }
    buf_printf(out, "sent %lu acked %llu ns %lld", sent, acked, ns_between(&t0, &t1));
    return 0;
}

static int verb_l2send(char *args, struct buf *out)
{
    char *f[6];
    unsigned long dev, psm, total, sdu;
    struct sockaddr_l2 peer = {.l2_family = AF_BLUETOOTH};
    struct hci_dev_info di;

    if (split_fields(args, f, 6) != 6 || parse_dec(f[0], 0, HCI_DEV_MAX, &dev) < 0 ||
        parse_bdaddr(f[1], &peer.l2_bdaddr) < 0 ||
        (strcmp(f[2], "public") && strcmp(f[2], "random")) ||
        parse_num(f[3], 1, 0xff, &psm) < 0 || parse_dec(f[4], 1, L2_MAX_TOTAL, &total) < 0 ||
        parse_dec(f[5], 1, L2_MAX_SDU, &sdu) < 0)
        return fail(out, "usage: l2send DEV ADDR public|random PSM TOTAL SDU (ADDR "
                    "aa:bb:cc:dd:ee:ff, PSM 1..0xff, TOTAL 1..1000000000, SDU 1..65535)");
    peer.l2_bdaddr_type = strcmp(f[2], "public") ? BDADDR_LE_RANDOM : BDADDR_LE_PUBLIC;
    peer.l2_psm = htole16((uint16_t)psm);
    if (hci_devinfo(dev, &di, out) < 0)
        return -1;
    if (!(di.flags & 1u << HCI_UP))
        return fail(out, "hci%lu is down (hciup %lu first)", dev, dev);
    int fd = bt_socket(SOCK_SEQPACKET | SOCK_NONBLOCK, BTPROTO_L2CAP, out);
    if (fd < 0)
        return -1;
    int rc = l2_transfer(fd, &di, &peer, f[1], total, sdu, out);
    close(fd);
    return rc;
}

/* ---- audio: ALSA PCM through the kernel's ioctl ABI ----------------------- */

/*
 * The ALSA PCM ABI, defined here (names, values and layouts as in the Linux
 * header include/uapi/sound/asound.h) so the static agent needs neither
 * alsa-lib nor the kernel headers; tinyalsa's pcm.c drives the same ioctls.
 */
#define SNDRV_PCM_ACCESS_RW_INTERLEAVED 3
#define SNDRV_PCM_FORMAT_S16_LE 2
#define SNDRV_PCM_SUBFORMAT_STD 0
#define SNDRV_PCM_HW_PARAM_ACCESS 0             /* masks */
#define SNDRV_PCM_HW_PARAM_FORMAT 1
#define SNDRV_PCM_HW_PARAM_SUBFORMAT 2
#define SNDRV_PCM_HW_PARAM_FIRST_MASK SNDRV_PCM_HW_PARAM_ACCESS
#define SNDRV_PCM_HW_PARAM_LAST_MASK SNDRV_PCM_HW_PARAM_SUBFORMAT
#define SNDRV_PCM_HW_PARAM_SAMPLE_BITS 8        /* intervals */
#define SNDRV_PCM_HW_PARAM_FRAME_BITS 9
#define SNDRV_PCM_HW_PARAM_CHANNELS 10
#define SNDRV_PCM_HW_PARAM_RATE 11
#define SNDRV_PCM_HW_PARAM_PERIOD_TIME 12
#define SNDRV_PCM_HW_PARAM_PERIOD_SIZE 13
#define SNDRV_PCM_HW_PARAM_PERIOD_BYTES 14
#define SNDRV_PCM_HW_PARAM_PERIODS 15
#define SNDRV_PCM_HW_PARAM_BUFFER_TIME 16
#define SNDRV_PCM_HW_PARAM_BUFFER_SIZE 17
#define SNDRV_PCM_HW_PARAM_BUFFER_BYTES 18
#define SNDRV_PCM_HW_PARAM_TICK_TIME 19
#define SNDRV_PCM_HW_PARAM_FIRST_INTERVAL SNDRV_PCM_HW_PARAM_SAMPLE_BITS
#define SNDRV_PCM_HW_PARAM_LAST_INTERVAL SNDRV_PCM_HW_PARAM_TICK_TIME
#define SNDRV_MASK_MAX 256

struct snd_interval {
    unsigned int min, max;
    unsigned int openmin:1, openmax:1, integer:1, empty:1;
};

struct snd_mask {
    uint32_t bits[(SNDRV_MASK_MAX + 31) / 32];
};

struct snd_pcm_hw_params {
    unsigned int flags;
    struct snd_mask masks[SNDRV_PCM_HW_PARAM_LAST_MASK - SNDRV_PCM_HW_PARAM_FIRST_MASK + 1];
    struct snd_mask mres[5];
    struct snd_interval intervals[SNDRV_PCM_HW_PARAM_LAST_INTERVAL -
                                  SNDRV_PCM_HW_PARAM_FIRST_INTERVAL + 1];
    struct snd_interval ires[9];
    unsigned int rmask;         /* W: parameters to refine */
    unsigned int cmask;         /* R: parameters changed */
    unsigned int info;
    unsigned int msbits;
    unsigned int rate_num;
    unsigned int rate_den;
    unsigned long fifo_size;    /* snd_pcm_uframes_t */
    unsigned char reserved[64];
};

struct snd_pcm_sw_params {
    int tstamp_mode;
    unsigned int period_step;
    unsigned int sleep_min;
    unsigned long avail_min;            /* snd_pcm_uframes_t, as the rest */
    unsigned long xfer_align;
    unsigned long start_threshold;
    unsigned long stop_threshold;
    unsigned long silence_threshold;
    unsigned long silence_size;
    unsigned long boundary;             /* R: the kernel fills it in */
    unsigned int proto;
    unsigned int tstamp_type;
    unsigned char reserved[56];
};

struct snd_xferi {
    long result;                /* snd_pcm_sframes_t: frames transferred */
    void *buf;
    unsigned long frames;       /* snd_pcm_uframes_t */
};

#define SNDRV_PCM_IOCTL_HW_REFINE _IOWR('A', 0x10, struct snd_pcm_hw_params)
#define SNDRV_PCM_IOCTL_HW_PARAMS _IOWR('A', 0x11, struct snd_pcm_hw_params)
#define SNDRV_PCM_IOCTL_SW_PARAMS _IOWR('A', 0x13, struct snd_pcm_sw_params)
#define SNDRV_PCM_IOCTL_DELAY _IOR('A', 0x21, long)
#define SNDRV_PCM_IOCTL_PREPARE _IO('A', 0x40)
#define SNDRV_PCM_IOCTL_START _IO('A', 0x42)
#define SNDRV_PCM_IOCTL_DROP _IO('A', 0x43)
#define SNDRV_PCM_IOCTL_DRAIN _IO('A', 0x44)
#define SNDRV_PCM_IOCTL_WRITEI_FRAMES _IOW('A', 0x50, struct snd_xferi)
#define SNDRV_PCM_IOCTL_READI_FRAMES _IOR('A', 0x51, struct snd_xferi)

_Static_assert(sizeof(struct snd_interval) == 12, "snd_interval");
_Static_assert(sizeof(struct snd_mask) == 32, "snd_mask");
#ifdef __x86_64__
_Static_assert(offsetof(struct snd_pcm_hw_params, intervals) == 260 &&
               offsetof(struct snd_pcm_hw_params, rmask) == 512 &&
               offsetof(struct snd_pcm_hw_params, fifo_size) == 536 &&
               sizeof(struct snd_pcm_hw_params) == 608, "snd_pcm_hw_params");
_Static_assert(offsetof(struct snd_pcm_sw_params, avail_min) == 16 &&
               offsetof(struct snd_pcm_sw_params, start_threshold) == 32 &&
               offsetof(struct snd_pcm_sw_params, boundary) == 64 &&
               offsetof(struct snd_pcm_sw_params, proto) == 72 &&
               sizeof(struct snd_pcm_sw_params) == 136, "snd_pcm_sw_params");
_Static_assert(sizeof(struct snd_xferi) == 24, "snd_xferi");
_Static_assert(SNDRV_PCM_IOCTL_HW_PARAMS == 0xc2604111 &&
               SNDRV_PCM_IOCTL_SW_PARAMS == 0xc0884113 &&
               SNDRV_PCM_IOCTL_DELAY == 0x80084121 &&
               SNDRV_PCM_IOCTL_WRITEI_FRAMES == 0x40184150 &&
               SNDRV_PCM_IOCTL_READI_FRAMES == 0x80184151, "ALSA PCM ioctl numbers");
#endif

#define PCM_MAX_INDEX 255UL             /* CARD and DEV */
#define PCM_MIN_RATE 8000UL
#define PCM_MAX_RATE 192000UL
#define PCM_MAX_CHANNELS 8UL
#define PCM_PLAY_MAX_MS 120000UL
#define PCM_REC_MIN_MS 200UL
#define PCM_REC_MAX_MS 10000UL
#define PCM_SLACK_MS 5000L              /* deadline: MS + this, for the whole transfer */
#define PCM_PERIOD_MS 10                /* period asked for (the driver may round up) */
#define PCM_PERIODS 4
#define PCM_SKIP_MS 100                 /* pcmrec: start-up transient, not analysed */
#define PCM_ANALYSIS_MAX 131072UL       /* pcmrec: samples the frequency fit uses */
#define PCM_FFT_MAX 65536UL             /* pcmrec: coarse peak search */
#define PCM_PI 3.14159265358979323846

/*
 * sin and cos of x (|x| < 1e6), to about 1e-16: the agent is linked without
 * libm. x = n*pi/2 + r with |r| <= pi/4 (pi/2 in two parts, as fdlibm does),
 * then Taylor series, whose first omitted terms are below 1e-16 there.
 */
static void sin_cos(double x, double *s, double *c)
{
    double k = x * 0.63661977236758134308;     /* 2/pi */
    long n = (long)(k >= 0 ? k + 0.5 : k - 0.5);
    double r = (x - (double)n * 1.57079632673412561417e+00) -
               (double)n * 6.07710050650619224932e-11;
    double r2 = r * r;
    double sr = r * (1 + r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 +
                r2 * (1.0 / 362880 + r2 * (-1.0 / 39916800 + r2 * (1.0 / 6227020800.0 +
                r2 * (-1.0 / 1307674368000.0))))))));
    double cr = 1 + r2 * (-1.0 / 2 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320 +
                r2 * (-1.0 / 3628800 + r2 * (1.0 / 479001600.0 + r2 * (-1.0 / 87178291200.0 +
                r2 * (1.0 / 20922789888000.0))))))));
    switch (n & 3) {
    case 0: *s = sr;  *c = cr;  break;
    case 1: *s = cr;  *c = -sr; break;
    case 2: *s = -sr; *c = -cr; break;
    default: *s = -cr; *c = sr; break;
    }
}

/* Square root of x >= 0 by Newton's method from above (no libm). */
static double sqrt_pos(double x)
{
    double y;
    if (!(x > 0))
        return 0;
    y = x > 1 ? x : 1;                 /* >= sqrt(x): the iterates decrease to it */
    for (int i = 0; i < 2000; i++) {
        double next = 0.5 * (y + x / y);
        if (!(next < y))
            break;
        y = next;
    }
    return y;
}

/* An open, configured PCM and the hardware parameters the driver accepted. */
struct pcm {
    int fd;
    char path[40];
    unsigned rate, channels;
    unsigned long period, buffer;       /* frames */
};

static struct snd_interval *hw_interval(struct snd_pcm_hw_params *p, int n)
{
    return &p->intervals[n - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];
}

static void hw_set_mask(struct snd_pcm_hw_params *p, int n, unsigned bit)
{
    struct snd_mask *m = &p->masks[n - SNDRV_PCM_HW_PARAM_FIRST_MASK];
    memset(m, 0, sizeof(*m));
    m->bits[bit >> 5] |= 1u << (bit & 31);
}

static void hw_set_range(struct snd_pcm_hw_params *p, int n, unsigned min, unsigned max)
{
    struct snd_interval *i = hw_interval(p, n);
    i->min = min;
    i->max = max;
    i->integer = 1;
}

/* Everything allowed (as tinyalsa's param_init), then S16_LE interleaved. */
static void hw_init(struct snd_pcm_hw_params *p)
{
    memset(p, 0, sizeof(*p));
    for (int n = SNDRV_PCM_HW_PARAM_FIRST_MASK; n <= SNDRV_PCM_HW_PARAM_LAST_MASK; n++)
        memset(&p->masks[n - SNDRV_PCM_HW_PARAM_FIRST_MASK], 0xff, sizeof(struct snd_mask));
    for (int n = SNDRV_PCM_HW_PARAM_FIRST_INTERVAL; n <= SNDRV_PCM_HW_PARAM_LAST_INTERVAL; n++)
        hw_interval(p, n)->max = ~0u;
    p->rmask = ~0u;
    p->info = ~0u;
    hw_set_mask(p, SNDRV_PCM_HW_PARAM_ACCESS, SNDRV_PCM_ACCESS_RW_INTERLEAVED);
    hw_set_mask(p, SNDRV_PCM_HW_PARAM_FORMAT, SNDRV_PCM_FORMAT_S16_LE);
    hw_set_mask(p, SNDRV_PCM_HW_PARAM_SUBFORMAT, SNDRV_PCM_SUBFORMAT_STD);
}

/* After a refused HW_PARAMS: what the device offers for S16_LE interleaved. */
static void pcm_describe(int fd, struct buf *out)
{
    struct snd_pcm_hw_params p;
    hw_init(&p);
    if (ioctl(fd, SNDRV_PCM_IOCTL_HW_REFINE, &p) < 0) {
        buf_printf(out, "; S16_LE interleaved is not supported (HW_REFINE: %s)",
                   strerror(errno));
        return;
    }
    struct snd_interval *r = hw_interval(&p, SNDRV_PCM_HW_PARAM_RATE);
    struct snd_interval *c = hw_interval(&p, SNDRV_PCM_HW_PARAM_CHANNELS);
    struct snd_interval *ps = hw_interval(&p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE);
    buf_printf(out, "; with S16_LE interleaved the device offers rate %u..%u channels "
               "%u..%u period %u..%u frames", r->min, r->max, c->min, c->max, ps->min, ps->max);
}

/*
 * Opens /dev/snd/pcmC<card>D<dev><p|c> non-blocking and sets it up: S16_LE,
 * RW interleaved, exactly rate and channels, a period of PCM_PERIOD_MS or a
 * little more (the driver picks the smallest it allows) and PCM_PERIODS
 * periods (or, if the driver refuses that, what it picks from 2..32); then
 * software parameters (start at start_threshold, stop on xrun when the buffer
 * is empty (playback) or full (capture), wake up every period) and PREPARE.
 */
static int pcm_open(struct pcm *pcm, unsigned long card, unsigned long dev, int capture,
                    unsigned rate, unsigned channels, struct buf *out)
{
    struct snd_pcm_hw_params hw;
    struct snd_pcm_sw_params sw;
    unsigned period = rate * PCM_PERIOD_MS / 1000;
    int r = -1;

    snprintf(pcm->path, sizeof(pcm->path), "/dev/snd/pcmC%luD%lu%c", card, dev,
             capture ? 'c' : 'p');
    pcm->fd = open(pcm->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (pcm->fd < 0) {
        if (errno == ENOENT)
            return fail(out, "open %s: %s (PCM devices: /proc/asound/pcm)", pcm->path,
                        strerror(errno));
        return fail_errno(out, "open", pcm->path);
    }
    for (int attempt = 0; attempt < 2 && r < 0; attempt++) {
        hw_init(&hw);
        hw_set_range(&hw, SNDRV_PCM_HW_PARAM_SAMPLE_BITS, 16, 16);
        hw_set_range(&hw, SNDRV_PCM_HW_PARAM_CHANNELS, channels, channels);
        hw_set_range(&hw, SNDRV_PCM_HW_PARAM_RATE, rate, rate);
        if (attempt == 0) {
            hw_set_range(&hw, SNDRV_PCM_HW_PARAM_PERIOD_SIZE, period, 2 * period);
            hw_set_range(&hw, SNDRV_PCM_HW_PARAM_PERIODS, PCM_PERIODS, PCM_PERIODS);
        } else {
            hw_set_range(&hw, SNDRV_PCM_HW_PARAM_PERIOD_SIZE, period / 4, 8 * period);
            hw_set_range(&hw, SNDRV_PCM_HW_PARAM_PERIODS, 2, 32);
        }
        r = ioctl(pcm->fd, SNDRV_PCM_IOCTL_HW_PARAMS, &hw);
    }
    if (r < 0) {
        fail(out, "%s: HW_PARAMS (S16_LE interleaved, rate %u, channels %u): %s", pcm->path,
             rate, channels, strerror(errno));
        pcm_describe(pcm->fd, out);
        close(pcm->fd);
        return -1;
    }
    pcm->rate = hw_interval(&hw, SNDRV_PCM_HW_PARAM_RATE)->min;
    pcm->channels = hw_interval(&hw, SNDRV_PCM_HW_PARAM_CHANNELS)->min;
    pcm->period = hw_interval(&hw, SNDRV_PCM_HW_PARAM_PERIOD_SIZE)->min;
    pcm->buffer = hw_interval(&hw, SNDRV_PCM_HW_PARAM_BUFFER_SIZE)->min;
    if (pcm->rate != rate || pcm->channels != channels || pcm->period == 0 ||
        pcm->buffer < pcm->period) {
        fail(out, "%s: HW_PARAMS gave rate %u channels %u period %lu buffer %lu", pcm->path,
             pcm->rate, pcm->channels, pcm->period, pcm->buffer);
        close(pcm->fd);
        return -1;
    }
    memset(&sw, 0, sizeof(sw));
    sw.period_step = 1;
    sw.avail_min = pcm->period;
    sw.start_threshold = capture ? 1 : pcm->period;
    sw.stop_threshold = pcm->buffer;
    if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_SW_PARAMS, &sw) < 0) {
        fail(out, "%s: SW_PARAMS: %s", pcm->path, strerror(errno));
        close(pcm->fd);
        return -1;
    }
    if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_PREPARE, 0) < 0) {
        fail(out, "%s: PREPARE: %s", pcm->path, strerror(errno));
        close(pcm->fd);
        return -1;
    }
    return 0;
}

/* Waits for the PCM (events POLLOUT or POLLIN) until deadline_ms after t0:
 * 1 if there is still time, 0 if the deadline passed. */
static int pcm_wait(const struct pcm *pcm, short events, const struct timespec *t0,
                    long deadline_ms)
{
    long left = deadline_ms - ms_since(t0);
    if (left <= 0)
        return 0;
    struct pollfd pfd = {.fd = pcm->fd, .events = events};
    poll(&pfd, 1, left < 100 ? (int)left : 100);
    return 1;
}

/*
 * Drains a playback PCM without blocking: DRAIN on the non-blocking fd returns
 * EAGAIN and the stream plays out; DELAY answers EBADFD once it has stopped
 * (state SETUP). Returns 0, or -1 with out set (stream dropped) at the deadline.
 */
static int pcm_drain(const struct pcm *pcm, const struct timespec *t0, long deadline_ms,
                     unsigned long *xruns, struct buf *out)
{
    long delay;
    if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_DELAY, &delay) < 0 && errno == EPIPE)
        (*xruns)++;             /* ran dry after the last write; DRAIN just stops it */
    if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_DRAIN, 0) == 0)
        return 0;
    if (errno != EAGAIN && errno != EINTR)
        return fail(out, "%s: DRAIN: %s", pcm->path, strerror(errno));
    for (;;) {
        if (ioctl(pcm->fd, SNDRV_PCM_IOCTL_DELAY, &delay) < 0) {
            if (errno == EBADFD)
                return 0;       /* drained: the stream is stopped */
            if (errno == EPIPE) {
                (*xruns)++;
                return 0;
            }
            return fail(out, "%s: DELAY while draining: %s", pcm->path, strerror(errno));
        }
        if (!pcm_wait(pcm, POLLOUT, t0, deadline_ms)) {
            ioctl(pcm->fd, SNDRV_PCM_IOCTL_DROP, 0);
            return fail(out, "%s: drain not done within %ld ms of the start (%ld frames "
                        "still queued)", pcm->path, deadline_ms, delay);
        }
    }
}

/* Parses "CARD DEV RATE CHANNELS" from f[0..3]; 0, or -1. */
static int parse_pcm_args(char **f, unsigned long *card, unsigned long *dev,
                          unsigned long *rate, unsigned long *channels)
{
    if (parse_dec(f[0], 0, PCM_MAX_INDEX, card) < 0 ||
        parse_dec(f[1], 0, PCM_MAX_INDEX, dev) < 0 ||
        parse_dec(f[2], PCM_MIN_RATE, PCM_MAX_RATE, rate) < 0 ||
        parse_dec(f[3], 1, PCM_MAX_CHANNELS, channels) < 0)
        return -1;
    return 0;
}

#define PCMPLAY_USAGE "usage: pcmplay CARD DEV RATE CHANNELS FREQ MS [AMPLITUDE_PERMILLE] " \
    "(CARD, DEV 0..255, RATE 8000..192000, CHANNELS 1..8, FREQ 1..(RATE-1)/2, " \
    "MS 1..120000, AMPLITUDE_PERMILLE 0..1000, default 500)"

/*
 * Plays MS ms of a FREQ Hz sine (every channel the same) on the playback PCM.
 * Sample n is A*sin(2*pi*FREQ*n/RATE) from a one-cycle-of-RATE table indexed
 * by FREQ*n mod RATE: exact and phase-continuous across writes and xruns.
 */
static int verb_pcmplay(char *args, struct buf *out)
{
    char *f[7];
    unsigned long card, dev, rate, channels, freq, ms, amp = 500, xruns = 0;
    struct pcm pcm;
    struct timespec t0, start;
    int nf = split_fields(args, f, 7);
    int rc = 0;

    if (nf < 6 || parse_pcm_args(f, &card, &dev, &rate, &channels) < 0 ||
        parse_dec(f[4], 1, (rate - 1) / 2, &freq) < 0 ||
        parse_dec(f[5], 1, PCM_PLAY_MAX_MS, &ms) < 0 ||
        (nf == 7 && parse_dec(f[6], 0, 1000, &amp) < 0))
        return fail(out, PCMPLAY_USAGE);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (pcm_open(&pcm, card, dev, 0, (unsigned)rate, (unsigned)channels, out) < 0)
        return -1;
    unsigned long total = ms * rate / 1000, written = 0, phase = 0, have = 0, off = 0;
    int16_t *table = malloc(rate * sizeof(*table));
    int16_t *chunk = malloc(pcm.period * channels * sizeof(*chunk));
    if (!table || !chunk)
        die("malloc");
    for (unsigned long k = 0; k < rate; k++) {
        double s, c, v;
        sin_cos(2 * PCM_PI * (double)k / (double)rate, &s, &c);
        v = s * 32767.0 * (double)amp / 1000.0;
        table[k] = (int16_t)(v >= 0 ? (long)(v + 0.5) : -(long)(-v + 0.5));
    }
    long deadline = (long)ms + PCM_SLACK_MS;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (written < total && rc == 0) {
        if (have == 0) {
            have = total - written < pcm.period ? total - written : pcm.period;
            off = 0;
            for (unsigned long i = 0; i < have; i++) {
                for (unsigned long ch = 0; ch < channels; ch++)
                    chunk[i * channels + ch] = table[phase];
                phase += freq;
                if (phase >= rate)
                    phase -= rate;
            }
        }
        struct snd_xferi x = {.buf = chunk + off * channels, .frames = have};
        if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_WRITEI_FRAMES, &x) == 0) {
            off += (unsigned long)x.result;
            have -= (unsigned long)x.result;
            written += (unsigned long)x.result;
        } else if (errno == EAGAIN) {
            if (!pcm_wait(&pcm, POLLOUT, &t0, deadline)) {
                ioctl(pcm.fd, SNDRV_PCM_IOCTL_DROP, 0);
                rc = fail(out, "%s: wrote %lu of %lu frames within %ld ms", pcm.path, written,
                          total, deadline);
            }
        } else if (errno == EPIPE) {
            xruns++;            /* underrun: the device ran dry; start again */
            if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_PREPARE, 0) < 0)
                rc = fail(out, "%s: PREPARE after an underrun: %s", pcm.path, strerror(errno));
        } else if (errno != EINTR) {
            rc = fail(out, "%s: WRITEI_FRAMES after %lu of %lu frames: %s", pcm.path, written,
                      total, strerror(errno));
        }
    }
    if (rc == 0)
        rc = pcm_drain(&pcm, &t0, deadline, &xruns, out);
    if (rc == 0)
        buf_printf(out, "frames %lu xruns %lu ms %ld rate %u channels %u period %lu buffer %lu",
                   written, xruns, ms_since(&start), pcm.rate, pcm.channels, pcm.period,
                   pcm.buffer);
    close(pcm.fd);
    free(table);
    free(chunk);
    return rc;
}

/* In-place radix-2 FFT of re/im (n a power of two), twiddles tw (n/2 cos, sin pairs). */
static void fft(double *re, double *im, unsigned long n, const double *tw)
{
    for (unsigned long i = 1, j = 0; i < n; i++) {
        unsigned long bit = n >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j |= bit;
        if (i < j) {
            double t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    for (unsigned long len = 2; len <= n; len <<= 1) {
        unsigned long step = n / len;
        for (unsigned long i = 0; i < n; i += len) {
            for (unsigned long k = 0; k < len / 2; k++) {
                double wr = tw[2 * k * step], wi = tw[2 * k * step + 1];
                unsigned long a = i + k, b = i + k + len / 2;
                double xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
    }
}

/* |DTFT|^2 of x[0..n) at frequency f (Hz) for sample rate rate, by Goertzel. */
static double goertzel(const double *x, unsigned long n, double f, double rate)
{
    double s, c, s1 = 0, s2 = 0;
    sin_cos(2 * PCM_PI * f / rate, &s, &c);
    double coeff = 2 * c;
    for (unsigned long i = 0; i < n; i++) {
        double s0 = x[i] + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    return s1 * s1 + s2 * s2 - coeff * s1 * s2;
}

/*
 * The dominant frequency of x[0..n) (n >= 16), its mean (DC) removed: the peak
 * of a Hann-windowed FFT of the first m (largest power of two <= n, at most
 * PCM_FFT_MAX) samples,
 * refined by parabolic interpolation, then a golden-section search for the
 * maximum of the Hann-windowed DTFT of all n samples within 1.5 bins (rate/n)
 * of it, which lies inside the main lobe (2 bins) of the true peak.
 */
static double dominant_freq(const int16_t *x, unsigned long n, double rate)
{
    unsigned long m = 1;
    while (m * 2 <= n && m * 2 <= PCM_FFT_MAX)
        m *= 2;
    double *re = malloc(m * sizeof(double)), *im = calloc(m, sizeof(double));
    double *tw = malloc(m * sizeof(double));   /* m/2 (cos, sin) pairs */
    double *w = malloc(n * sizeof(double));
    if (!re || !im || !tw || !w)
        die("malloc");
    double mean = 0;
    for (unsigned long i = 0; i < n; i++)
        mean += x[i];
    mean /= (double)n;
    for (unsigned long k = 0; k < m / 2; k++)
        sin_cos(-2 * PCM_PI * (double)k / (double)m, &tw[2 * k + 1], &tw[2 * k]);
    for (unsigned long i = 0; i < m; i++) {
        double s, c;
        sin_cos(2 * PCM_PI * (double)i / (double)(m - 1), &s, &c);
        re[i] = ((double)x[i] - mean) * (0.5 - 0.5 * c);
    }
    fft(re, im, m, tw);
    unsigned long best = 1;
    double best_p = -1;
    for (unsigned long k = 1; k < m / 2; k++) {
        double p = re[k] * re[k] + im[k] * im[k];
        if (p > best_p) {
            best_p = p;
            best = k;
        }
    }
    double delta = 0;
    if (best > 1 && best + 1 < m / 2) {
        double a = sqrt_pos(re[best - 1] * re[best - 1] + im[best - 1] * im[best - 1]);
        double b = sqrt_pos(best_p);
        double g = sqrt_pos(re[best + 1] * re[best + 1] + im[best + 1] * im[best + 1]);
        double den = a - 2 * b + g;
        if (den < 0)
            delta = 0.5 * (a - g) / den;
        if (delta > 0.5 || delta < -0.5)
            delta = 0;
    }
    double f0 = ((double)best + delta) * rate / (double)m;
    for (unsigned long i = 0; i < n; i++) {
        double s, c;
        sin_cos(2 * PCM_PI * (double)i / (double)(n - 1), &s, &c);
        w[i] = ((double)x[i] - mean) * (0.5 - 0.5 * c);
    }
    double lo = f0 - 1.5 * rate / (double)n, hi = f0 + 1.5 * rate / (double)n;
    if (lo < 0)
        lo = 0;
    if (hi > rate / 2)
        hi = rate / 2;
    const double gr = 0.61803398874989484820;
    double p1 = hi - gr * (hi - lo), p2 = lo + gr * (hi - lo);
    double v1 = goertzel(w, n, p1, rate), v2 = goertzel(w, n, p2, rate);
    for (int it = 0; it < 32; it++) {   /* 3 bins * 0.618^32: ~1e-6 bin */
        if (v1 >= v2) {
            hi = p2;
            p2 = p1;
            v2 = v1;
            p1 = hi - gr * (hi - lo);
            v1 = goertzel(w, n, p1, rate);
        } else {
            lo = p1;
            p1 = p2;
            v1 = v2;
            p2 = lo + gr * (hi - lo);
            v2 = goertzel(w, n, p2, rate);
        }
    }
    free(re);
    free(im);
    free(tw);
    free(w);
    return (lo + hi) / 2;
}

#define PCMREC_USAGE "usage: pcmrec CARD DEV RATE CHANNELS MS [PATH] (CARD, DEV 0..255, " \
    "RATE 8000..192000, CHANNELS 1..8, MS 200..10000; PATH: file for the raw S16_LE " \
    "interleaved capture)"

/*
 * Records MS ms from the capture PCM and analyses channel 0 from PCM_SKIP_MS
 * on: dominant frequency (of at most PCM_ANALYSIS_MAX samples), RMS and peak
 * (of all of it) as fractions of full scale (32768).
 */
static int verb_pcmrec(char *args, struct buf *out)
{
    char *f[6];
    unsigned long card, dev, rate, channels, ms, xruns = 0;
    struct pcm pcm;
    struct timespec t0;
    int nf = split_fields(args, f, 6);
    int rc = 0, raw = -1;

    if (nf < 5 || parse_pcm_args(f, &card, &dev, &rate, &channels) < 0 ||
        parse_dec(f[4], PCM_REC_MIN_MS, PCM_REC_MAX_MS, &ms) < 0 ||
        (nf == 6 && !*f[5]))
        return fail(out, PCMREC_USAGE);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (pcm_open(&pcm, card, dev, 1, (unsigned)rate, (unsigned)channels, out) < 0)
        return -1;
    if (nf == 6) {
        raw = open(f[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (raw < 0) {
            rc = fail_errno(out, "open", f[5]);
            close(pcm.fd);
            return rc;
        }
    }
    unsigned long total = ms * rate / 1000, got = 0, skip = rate * PCM_SKIP_MS / 1000;
    unsigned long keep = total - skip < PCM_ANALYSIS_MAX ? total - skip : PCM_ANALYSIS_MAX;
    unsigned long kept = 0, peak = 0;
    double sum2 = 0;
    int16_t *chunk = malloc(pcm.buffer * channels * sizeof(*chunk));
    int16_t *x = malloc(keep * sizeof(*x));
    if (!chunk || !x)
        die("malloc");
    long deadline = (long)ms + PCM_SLACK_MS;
    if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_START, 0) < 0)
        rc = fail(out, "%s: START: %s", pcm.path, strerror(errno));
    while (got < total && rc == 0) {
        unsigned long want = total - got < pcm.buffer ? total - got : pcm.buffer;
        struct snd_xferi xf = {.buf = chunk, .frames = want};
        if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_READI_FRAMES, &xf) == 0) {
            unsigned long n = (unsigned long)xf.result;
            for (unsigned long i = 0; i < n; i++) {
                int v = chunk[i * channels];
                if (got + i < skip)
                    continue;
                unsigned long a = (unsigned long)(v < 0 ? -v : v);
                if (a > peak)
                    peak = a;
                sum2 += (double)v * v;
                if (kept < keep)
                    x[kept++] = (int16_t)v;
            }
            if (raw >= 0 && write_all(raw, (const char *)chunk, n * channels * 2) < 0)
                rc = fail_errno(out, "write", f[5]);
            got += n;
        } else if (errno == EAGAIN) {
            if (!pcm_wait(&pcm, POLLIN, &t0, deadline))
                rc = fail(out, "%s: read %lu of %lu frames within %ld ms", pcm.path, got,
                          total, deadline);
        } else if (errno == EPIPE) {
            xruns++;            /* overrun: the buffer filled up; start again */
            if (ioctl(pcm.fd, SNDRV_PCM_IOCTL_PREPARE, 0) < 0 ||
                ioctl(pcm.fd, SNDRV_PCM_IOCTL_START, 0) < 0)
                rc = fail(out, "%s: restart after an overrun: %s", pcm.path, strerror(errno));
        } else if (errno != EINTR) {
            rc = fail(out, "%s: READI_FRAMES after %lu of %lu frames: %s", pcm.path, got,
                      total, strerror(errno));
        }
    }
    ioctl(pcm.fd, SNDRV_PCM_IOCTL_DROP, 0);
    close(pcm.fd);
    if (raw >= 0 && close(raw) < 0 && rc == 0)
        rc = fail_errno(out, "close", f[5]);
    if (rc == 0) {
        double freq = peak ? dominant_freq(x, kept, (double)rate) : 0;
        buf_printf(out, "frames %lu xruns %lu freq %.2f rms %.6f peak %.6f", got, xruns, freq,
                   sqrt_pos(sum2 / (double)(total - skip)) / 32768.0, (double)peak / 32768.0);
    }
    free(chunk);
    free(x);
    return rc;
}

/*
 * The ALSA control ABI (same header, include/uapi/sound/asound.h): mixer
 * elements. ALSA starts every mixer control muted at zero volume, and QEMU's
 * HDA codecs (mixer=on, the default) apply the guest's amplifier settings, so
 * a guest without alsactl hears nothing until it unmutes.
 */
#define SNDRV_CTL_ELEM_TYPE_BOOLEAN 1
#define SNDRV_CTL_ELEM_TYPE_INTEGER 2
#define SNDRV_CTL_ELEM_TYPE_ENUMERATED 3
#define SNDRV_CTL_ELEM_TYPE_BYTES 4
#define SNDRV_CTL_ELEM_TYPE_IEC958 5
#define SNDRV_CTL_ELEM_TYPE_INTEGER64 6
#define SNDRV_CTL_ELEM_ACCESS_READ (1 << 0)
#define SNDRV_CTL_ELEM_ACCESS_WRITE (1 << 1)
#define SNDRV_CTL_ELEM_ACCESS_INACTIVE (1 << 8)
#define SNDRV_CTL_ELEM_ID_NAME_MAXLEN 44

struct snd_ctl_elem_id {
    unsigned int numid;         /* 0: look up by the other fields */
    int iface;                  /* SNDRV_CTL_ELEM_IFACE_*: card hwdep mixer pcm rawmidi timer sequencer */
    unsigned int device;
    unsigned int subdevice;
    unsigned char name[SNDRV_CTL_ELEM_ID_NAME_MAXLEN];
    unsigned int index;
};

struct snd_ctl_elem_list {
    unsigned int offset;
    unsigned int space;         /* W: room in pids */
    unsigned int used;          /* R: ids written */
    unsigned int count;         /* R: elements on the card */
    struct snd_ctl_elem_id *pids;
    unsigned char reserved[50];
};

struct snd_ctl_elem_info {
    struct snd_ctl_elem_id id;
    int type;                   /* SNDRV_CTL_ELEM_TYPE_* */
    unsigned int access;        /* SNDRV_CTL_ELEM_ACCESS_* */
    unsigned int count;         /* values (channels) */
    int owner;                  /* __kernel_pid_t */
    union {
        struct {
            long min, max, step;
        } integer;
        struct {
            long long min, max, step;
        } integer64;
        struct {
            unsigned int items, item;
            char name[64];
            uint64_t names_ptr;
            unsigned int names_length;
        } enumerated;
        unsigned char reserved[128];
    } value;
    unsigned char reserved[64];
};

/* (the header's inner unions also hold obsolete pointers, and iec958) */
struct snd_ctl_elem_value {
    struct snd_ctl_elem_id id;
    unsigned int indirect:1;
    union {
        long integer[128];
        long long integer64[64];
        unsigned int enumerated[128];
        unsigned char bytes[512];
    } value;
    unsigned char reserved[128];
};

#define SNDRV_CTL_IOCTL_ELEM_LIST _IOWR('U', 0x10, struct snd_ctl_elem_list)
#define SNDRV_CTL_IOCTL_ELEM_INFO _IOWR('U', 0x11, struct snd_ctl_elem_info)
#define SNDRV_CTL_IOCTL_ELEM_READ _IOWR('U', 0x12, struct snd_ctl_elem_value)
#define SNDRV_CTL_IOCTL_ELEM_WRITE _IOWR('U', 0x13, struct snd_ctl_elem_value)

_Static_assert(sizeof(struct snd_ctl_elem_id) == 64 &&
               offsetof(struct snd_ctl_elem_id, name) == 16 &&
               offsetof(struct snd_ctl_elem_id, index) == 60, "snd_ctl_elem_id");
#ifdef __x86_64__
_Static_assert(offsetof(struct snd_ctl_elem_list, pids) == 16 &&
               sizeof(struct snd_ctl_elem_list) == 80, "snd_ctl_elem_list");
_Static_assert(offsetof(struct snd_ctl_elem_info, value) == 80 &&
               sizeof(struct snd_ctl_elem_info) == 272, "snd_ctl_elem_info");
_Static_assert(offsetof(struct snd_ctl_elem_value, value) == 72 &&
               offsetof(struct snd_ctl_elem_value, reserved) == 1096 &&
               sizeof(struct snd_ctl_elem_value) == 1224, "snd_ctl_elem_value");
_Static_assert(SNDRV_CTL_IOCTL_ELEM_LIST == 0xc0505510 &&
               SNDRV_CTL_IOCTL_ELEM_INFO == 0xc1105511 &&
               SNDRV_CTL_IOCTL_ELEM_READ == 0xc4c85512 &&
               SNDRV_CTL_IOCTL_ELEM_WRITE == 0xc4c85513, "ALSA control ioctl numbers");
#endif

#define CTL_MAX_ELEMS 1024U             /* ctllist lists at most this many */
#define CTL_MAX_NUMID 0xffffffffUL

static const char *const ctl_ifaces[] = {"card", "hwdep", "mixer", "pcm", "rawmidi", "timer",
                                         "sequencer"};
static const char *const ctl_types[] = {"none", "boolean", "integer", "enumerated", "bytes",
                                        "iec958", "integer64"};

static int ctl_open(unsigned long card, char *path, size_t size, struct buf *out)
{
    snprintf(path, size, "/dev/snd/controlC%lu", card);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return fail(out, "open %s: %s (sound cards: /proc/asound/cards)", path,
                    strerror(errno));
    if (fd < 0)
        return fail_errno(out, "open", path);
    return fd;
}

/* Values of an element as "V1,V2,..." into out, or "-" if it has none we show
 * (not readable, or bytes/iec958). */
static int ctl_values(int fd, const struct snd_ctl_elem_info *info, struct buf *out)
{
    struct snd_ctl_elem_value v;
    unsigned max = info->type == SNDRV_CTL_ELEM_TYPE_INTEGER64 ? 64 : 128;
    unsigned n = info->count < max ? info->count : max;
    if (!(info->access & SNDRV_CTL_ELEM_ACCESS_READ) || n == 0 ||
        info->type < SNDRV_CTL_ELEM_TYPE_BOOLEAN || info->type > SNDRV_CTL_ELEM_TYPE_INTEGER64 ||
        info->type == SNDRV_CTL_ELEM_TYPE_BYTES || info->type == SNDRV_CTL_ELEM_TYPE_IEC958) {
        buf_str(out, "-");
        return 0;
    }
    memset(&v, 0, sizeof(v));
    v.id = info->id;
    if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_READ, &v) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        if (info->type == SNDRV_CTL_ELEM_TYPE_INTEGER64)
            buf_printf(out, "%s%lld", i ? "," : "", v.value.integer64[i]);
        else if (info->type == SNDRV_CTL_ELEM_TYPE_ENUMERATED)
            buf_printf(out, "%s%u", i ? "," : "", v.value.enumerated[i]);
        else
            buf_printf(out, "%s%ld", i ? "," : "", v.value.integer[i]);
    }
    return 0;
}

/* The range of an element's values: [min, max] and step (0 if any). */
static void ctl_range(const struct snd_ctl_elem_info *info, long long *min, long long *max,
                      long long *step)
{
    *min = *max = *step = 0;
    if (info->type == SNDRV_CTL_ELEM_TYPE_BOOLEAN) {
        *max = 1;
    } else if (info->type == SNDRV_CTL_ELEM_TYPE_INTEGER) {
        *min = info->value.integer.min;
        *max = info->value.integer.max;
        *step = info->value.integer.step;
    } else if (info->type == SNDRV_CTL_ELEM_TYPE_INTEGER64) {
        *min = info->value.integer64.min;
        *max = info->value.integer64.max;
        *step = info->value.integer64.step;
    } else if (info->type == SNDRV_CTL_ELEM_TYPE_ENUMERATED) {
        *max = info->value.enumerated.items ? (long long)info->value.enumerated.items - 1 : 0;
    }
}

static int ctl_info(int fd, unsigned long numid, struct snd_ctl_elem_info *info)
{
    memset(info, 0, sizeof(*info));
    info->id.numid = (unsigned)numid;
    return ioctl(fd, SNDRV_CTL_IOCTL_ELEM_INFO, info);
}

static int verb_ctllist(char *args, struct buf *out)
{
    unsigned long card;
    struct snd_ctl_elem_list list;
    char path[32];
    int rc = 0;

    if (parse_dec(args, 0, PCM_MAX_INDEX, &card) < 0)
        return fail(out, "usage: ctllist CARD (CARD 0..255)");
    int fd = ctl_open(card, path, sizeof(path), out);
    if (fd < 0)
        return -1;
    memset(&list, 0, sizeof(list));
    if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_LIST, &list) < 0) {
        rc = fail(out, "%s: ELEM_LIST: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    list.space = list.count < CTL_MAX_ELEMS ? list.count : CTL_MAX_ELEMS;
    list.pids = calloc(list.space ? list.space : 1, sizeof(*list.pids));
    if (!list.pids)
        die("calloc");
    if (list.space && ioctl(fd, SNDRV_CTL_IOCTL_ELEM_LIST, &list) < 0)
        rc = fail(out, "%s: ELEM_LIST: %s", path, strerror(errno));
    for (unsigned i = 0; rc == 0 && list.space && i < list.used && i < list.space; i++) {
        struct snd_ctl_elem_info info;
        long long min, max, step;
        char name[SNDRV_CTL_ELEM_ID_NAME_MAXLEN + 1];
        if (ctl_info(fd, list.pids[i].numid, &info) < 0) {
            if (errno == ENOENT)
                continue;       /* removed meanwhile */
            rc = fail(out, "%s: ELEM_INFO numid %u: %s", path, list.pids[i].numid,
                      strerror(errno));
            break;
        }
        ctl_range(&info, &min, &max, &step);
        size_t len = strnlen((const char *)info.id.name, SNDRV_CTL_ELEM_ID_NAME_MAXLEN);
        for (size_t k = 0; k < len; k++) {
            char c = (char)info.id.name[k];
            name[k] = c >= ' ' && c < 0x7f ? c : '?';
        }
        name[len] = '\0';
        buf_printf(out, "%snumid %u iface %s type %s access %s%s%s%s count %u values ",
                   out->len ? "\n" : "", info.id.numid,
                   info.id.iface >= 0 && info.id.iface <= 6 ? ctl_ifaces[info.id.iface] : "?",
                   info.type >= 0 && info.type <= 6 ? ctl_types[info.type] : "?",
                   info.access & SNDRV_CTL_ELEM_ACCESS_READ ? "r" : "",
                   info.access & SNDRV_CTL_ELEM_ACCESS_WRITE ? "w" : "",
                   info.access & SNDRV_CTL_ELEM_ACCESS_INACTIVE ? "i" : "",
                   info.access & (SNDRV_CTL_ELEM_ACCESS_READ | SNDRV_CTL_ELEM_ACCESS_WRITE |
                                  SNDRV_CTL_ELEM_ACCESS_INACTIVE) ? "" : "-", info.count);
        if (ctl_values(fd, &info, out) < 0) {
            rc = fail(out, "%s: ELEM_READ numid %u: %s", path, info.id.numid, strerror(errno));
            break;
        }
        buf_printf(out, " min %lld max %lld step %lld index %u device %u name %s", min, max,
                   step, info.id.index, info.id.device, name);
    }
    free(list.pids);
    close(fd);
    return rc;
}

/* Parses "V1,V2,..." (signed decimal) into v; the count, or -1. */
static int parse_values(char *s, long long *v, int max)
{
    int n = 0;
    for (char *tok = s;; n++) {
        char *comma = strchr(tok, ',');
        char *end;
        if (comma)
            *comma = '\0';
        if (n == max || !*tok || (*tok != '-' && (*tok < '0' || *tok > '9')))
            return -1;
        errno = 0;
        v[n] = strtoll(tok, &end, 10);
        if (*end || errno)
            return -1;
        if (!comma)
            return n + 1;
        tok = comma + 1;
    }
}

static int verb_ctlset(char *args, struct buf *out)
{
    char *f[3];
    unsigned long card, numid;
    long long vals[128], min, max, step;
    struct snd_ctl_elem_info info;
    struct snd_ctl_elem_value v;
    char path[32];
    int nv, rc = 0;

    if (split_fields(args, f, 3) != 3 || parse_dec(f[0], 0, PCM_MAX_INDEX, &card) < 0 ||
        parse_dec(f[1], 1, CTL_MAX_NUMID, &numid) < 0 || (nv = parse_values(f[2], vals, 128)) < 0)
        return fail(out, "usage: ctlset CARD NUMID VALUE[,VALUE...] (CARD 0..255, NUMID "
                    "1..4294967295 as ctllist shows, one value for every channel or one each)");
    int fd = ctl_open(card, path, sizeof(path), out);
    if (fd < 0)
        return -1;
    if (ctl_info(fd, numid, &info) < 0) {
        rc = errno == ENOENT ? fail(out, "%s: no element numid %lu", path, numid)
                             : fail(out, "%s: ELEM_INFO numid %lu: %s", path, numid,
                                    strerror(errno));
        close(fd);
        return rc;
    }
    ctl_range(&info, &min, &max, &step);
    unsigned cap = info.type == SNDRV_CTL_ELEM_TYPE_INTEGER64 ? 64 : 128;
    if (info.type != SNDRV_CTL_ELEM_TYPE_BOOLEAN && info.type != SNDRV_CTL_ELEM_TYPE_INTEGER &&
        info.type != SNDRV_CTL_ELEM_TYPE_ENUMERATED && info.type != SNDRV_CTL_ELEM_TYPE_INTEGER64)
        rc = fail(out, "numid %lu: type %s is not settable here", numid,
                  info.type >= 0 && info.type <= 6 ? ctl_types[info.type] : "?");
    else if (!(info.access & SNDRV_CTL_ELEM_ACCESS_WRITE))
        rc = fail(out, "numid %lu is not writable", numid);
    else if (info.count == 0 || info.count > cap || (nv != 1 && (unsigned)nv != info.count))
        rc = fail(out, "numid %lu has %u values: give 1 or %u", numid, info.count, info.count);
    for (int i = 0; rc == 0 && i < nv; i++)
        if (vals[i] < min || vals[i] > max)
            rc = fail(out, "numid %lu: value %lld is outside %lld..%lld", numid, vals[i], min,
                      max);
    if (rc == 0) {
        memset(&v, 0, sizeof(v));
        v.id = info.id;
        for (unsigned i = 0; i < info.count; i++) {
            long long x = vals[nv == 1 ? 0 : i];
            if (info.type == SNDRV_CTL_ELEM_TYPE_INTEGER64)
                v.value.integer64[i] = x;
            else if (info.type == SNDRV_CTL_ELEM_TYPE_ENUMERATED)
                v.value.enumerated[i] = (unsigned)x;
            else
                v.value.integer[i] = (long)x;
        }
        if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_WRITE, &v) < 0)
            rc = fail(out, "%s: ELEM_WRITE numid %lu: %s", path, numid, strerror(errno));
        else if (ctl_values(fd, &info, out) < 0)
            rc = fail(out, "%s: ELEM_READ numid %lu: %s", path, numid, strerror(errno));
    }
    close(fd);
    return rc;
}

/* ---- memory: mem, memhog, memhogstat (automatic ballooning) --------------- */

#define MEMINFO_PATH "/proc/meminfo"
#define VMSTAT_PATH "/proc/vmstat"
#define MEM_FILE_MAX (256 * 1024)       /* /proc/vmstat is ~8 KiB */
#define MEMHOG_MAX_RATE 1048576ULL      /* MIB_PER_S: at most 1 TiB/s */
#define MEMHOG_LIMIT_FACTOR 4ULL        /* MIB: at most 4 x MemTotal */
#define MEMHOG_KILL_WAIT_MS 10000L      /* for a SIGKILLed child to be reaped */
#define MEMHOG_CHUNK (256 * 1024)       /* touched between progress updates */
#define MEMHOG_EXIT_MMAP 2              /* the child's exit status if mmap fails */
#define MEMHOG_EXIT_SETUP 3             /* ... if the agent died before it started */

/* Reads a small text file (procfs) into a NUL-terminated string to free(), or
 * NULL with the message in out. */
static char *read_text(const char *path, struct buf *out)
{
    struct buf b = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail_errno(out, "open", path);
        return NULL;
    }
    for (;;) {
        buf_reserve(&b, 4096 + 1);
        ssize_t n = read(fd, b.data + b.len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            free(b.data);
            errno = e;
            fail_errno(out, "read", path);
            return NULL;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
        if (b.len > MEM_FILE_MAX) {
            close(fd);
            free(b.data);
            fail(out, "%s: larger than %d bytes", path, MEM_FILE_MAX);
            return NULL;
        }
    }
    close(fd);
    buf_reserve(&b, 1);
    b.data[b.len] = '\0';
    return b.data;
}

/* Parses the decimal digits at *s, advancing it: 0, -1 if there is no digit,
 * -2 if the number does not fit in 64 bits. */
static int scan_u64(const char **s, unsigned long long *v)
{
    const char *p = *s;
    unsigned long long n = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (~0ULL - d) / 10)
            return -2;
        n = n * 10 + d;
    }
    *s = p;
    *v = n;
    return 0;
}

/*
 * Finds the line of KEY in a procfs text: "KEY:   N kB" (meminfo, kib set) or
 * "KEY N" (vmstat). 1 with *v set, 0 if there is no such line, -1 if it is
 * malformed.
 */
static int proc_value(const char *text, const char *key, int kib, unsigned long long *v)
{
    size_t klen = strlen(key);
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        if (!strncmp(line, key, klen) && line[klen] == (kib ? ':' : ' ')) {
            const char *p = line + klen + 1;
            while (*p == ' ')
                p++;
            if (scan_u64(&p, v) < 0)
                return -1;
            if (kib) {
                if (strncmp(p, " kB", 3))
                    return -1;
                p += 3;
            }
            return p == end ? 1 : -1;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

enum { MI_TOTAL, MI_FREE, MI_AVAILABLE, MI_CACHED, MI_BUFFERS, MI_SHMEM, MI_ANON, MI_COUNT };
static const char *const meminfo_keys[MI_COUNT] = {
    "MemTotal", "MemFree", "MemAvailable", "Cached", "Buffers", "Shmem", "AnonPages",
};

/* The meminfo_keys values (KiB) from /proc/meminfo; -1 (message in out) if one
 * is missing or malformed. */
static int read_meminfo(unsigned long long kib[MI_COUNT], struct buf *out)
{
    char *text = read_text(MEMINFO_PATH, out);
    int rc = 0;
    if (!text)
        return -1;
    for (int i = 0; i < MI_COUNT && rc == 0; i++) {
        int r = proc_value(text, meminfo_keys[i], 1, &kib[i]);
        if (r <= 0)
            rc = fail(out, "%s: %s %s line", MEMINFO_PATH, r ? "malformed" : "no",
                      meminfo_keys[i]);
    }
    free(text);
    return rc;
}

static int verb_mem(char *args, struct buf *out)
{
    unsigned long long kib[MI_COUNT], inflate = 0, deflate = 0, ooms = 0;
    long long balloon = -1, oom_kills = -1;

    if (args && *args)
        return fail(out, "usage: mem");
    if (read_meminfo(kib, out) < 0)
        return -1;
    char *text = read_text(VMSTAT_PATH, out);
    if (!text)
        return -1;
    /* vm events: balloon_* with CONFIG_MEMORY_BALLOON, oom_kill since Linux 4.13 */
    int ri = proc_value(text, "balloon_inflate", 0, &inflate);
    int rd = proc_value(text, "balloon_deflate", 0, &deflate);
    int ro = proc_value(text, "oom_kill", 0, &ooms);
    free(text);
    if (ri < 0 || rd < 0 || ro < 0)
        return fail(out, "%s: malformed %s line", VMSTAT_PATH,
                    ri < 0 ? "balloon_inflate" : rd < 0 ? "balloon_deflate" : "oom_kill");
    if (ri && rd) {
        /* pages in the balloon now; never negative (-1 means "not counted") */
        unsigned long long page_kib = (unsigned long long)sysconf(_SC_PAGESIZE) / 1024;
        unsigned long long pages = inflate > deflate ? inflate - deflate : 0;
        if (pages > (1ULL << 52) / page_kib)
            return fail(out, "%s: balloon_inflate %llu, balloon_deflate %llu: absurd",
                        VMSTAT_PATH, inflate, deflate);
        balloon = (long long)(pages * page_kib);
    }
    if (ro) {
        if (ooms > (1ULL << 62))
            return fail(out, "%s: oom_kill %llu: absurd", VMSTAT_PATH, ooms);
        oom_kills = (long long)ooms;
    }
    buf_printf(out, "total=%llu free=%llu available=%llu cached=%llu buffers=%llu shmem=%llu "
               "anon=%llu balloon=%lld oom_kills=%lld", kib[MI_TOTAL], kib[MI_FREE],
               kib[MI_AVAILABLE], kib[MI_CACHED], kib[MI_BUFFERS], kib[MI_SHMEM], kib[MI_ANON],
               balloon, oom_kills);
    return 0;
}

/* One MAP_SHARED page: the memhog child writes its progress, the agent reads it. */
struct memhog_shared {
    unsigned long long touched_kib;
    unsigned done;                      /* 1 once every page was touched */
};

enum { HOG_NONE, HOG_RUNNING, HOG_REAPED, HOG_STOPPED, HOG_LOST };

/* The latest memhog child (kept after it ended, for memhogstat). */
static struct {
    int state;                          /* HOG_* */
    pid_t pid;
    int status;                         /* wait status once HOG_REAPED */
    unsigned long long target_kib;
    struct memhog_shared *shared;
} hog;

/* Reaps the memhog child if it has ended, waiting up to wait_ms for that;
 * returns 1 if it still runs. Only ever waits for that one pid, so the sh
 * verb's own waitpid keeps working. */
static int memhog_reap(long wait_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (hog.state == HOG_RUNNING) {
        int status;
        pid_t w = waitpid(hog.pid, &status, WNOHANG);
        if (w == hog.pid) {
            hog.state = HOG_REAPED;
            hog.status = status;
        } else if (w < 0 && errno != EINTR) {
            hog.state = HOG_LOST;       /* ECHILD: not ours any more */
        } else if (w == 0) {
            if (ms_since(&t0) >= wait_ms)
                break;
            struct timespec d = {0, 1000000};
            nanosleep(&d, NULL);
        }
    }
    return hog.state == HOG_RUNNING;
}

/* Ends a running memhog child with SIGKILL and reaps it; -1 (message in out)
 * if it does not go away in time (it stays the current child). */
static int memhog_kill(struct buf *out)
{
    if (!memhog_reap(0))
        return 0;
    if (kill(hog.pid, SIGKILL) < 0 && errno != ESRCH)
        return fail(out, "kill %d: %s", (int)hog.pid, strerror(errno));
    if (memhog_reap(MEMHOG_KILL_WAIT_MS))
        return fail(out, "memhog child %d still runs %ld ms after SIGKILL", (int)hog.pid,
                    MEMHOG_KILL_WAIT_MS);
    if (hog.state == HOG_REAPED && WIFSIGNALED(hog.status) && WTERMSIG(hog.status) == SIGKILL)
        hog.state = HOG_STOPPED;
    return 0;
}

/* Sleeps until t0 + kib KiB at rate MiB/s. */
static void memhog_pace(const struct timespec *t0, unsigned long long kib,
                        unsigned long long rate)
{
    unsigned long long per_s = rate * 1024;            /* KiB per second, <= 2^30 */
    unsigned long long sec = kib / per_s;
    unsigned long long ns = (kib % per_s) * 1000000000ULL / per_s;
    struct timespec at = {.tv_sec = t0->tv_sec + (time_t)sec,
                          .tv_nsec = t0->tv_nsec + (long)ns};
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
}

/* The memhog child: allocates mib MiB, writes every page (non-zero, every page
 * different), publishing progress in sh, then holds the memory until killed. */
static void memhog_child(struct memhog_shared *sh, unsigned long long mib,
                         unsigned long long rate, pid_t parent)
{
    /* die with the agent; be the OOM killer's first choice, not the agent */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(MEMHOG_EXIT_SETUP);
    /* hold no descriptor of the agent's (serial line, claimed usbfs, evdev...) */
    long max_fd = sysconf(_SC_OPEN_MAX);
    if (max_fd < 0 || max_fd > 65536)
        max_fd = 65536;
    for (int fd = 3; fd < max_fd; fd++)
        close(fd);
    int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj >= 0) {
        if (write(adj, "1000", 4) < 0) {
            /* not fatal: the kernel may refuse */
        }
        close(adj);
    }
    size_t size = (size_t)mib << 20;
    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    if (mem == MAP_FAILED)
        _exit(MEMHOG_EXIT_MMAP);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t chunk = page > MEMHOG_CHUNK ? page : MEMHOG_CHUNK;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t off = 0; off < size;) {
        size_t end = size - off > chunk ? off + chunk : size;
        for (; off < end; off += page) {
            unsigned long long idx = off / page;
            memset(mem + off, (int)(1 + idx % 255), page);
            memcpy(mem + off, &idx, sizeof(idx));
        }
        __asm__ volatile("" ::: "memory");      /* the writes are the point */
        __atomic_store_n(&sh->touched_kib, (unsigned long long)(off >> 10), __ATOMIC_RELEASE);
        if (rate)
            memhog_pace(&t0, off >> 10, rate);  /* done at MIB / MIB_PER_S s */
    }
    __atomic_store_n(&sh->done, 1U, __ATOMIC_RELEASE);
    for (;;)
        pause();
}

/* Parses a non-negative decimal argument, with a message for each way it is bad. */
static int parse_u64_arg(const char *s, const char *what, unsigned long long *v,
                         struct buf *out)
{
    const char *p = s;
    int r = scan_u64(&p, v);
    if (r == -2)
        return fail(out, "%s %.40s is too large", what, s);
    if (r < 0 || *p)
        return fail(out, "%s must be a non-negative decimal number: %.40s", what, s);
    return 0;
}

static int verb_memhog(char *args, struct buf *out)
{
    char *f[2] = {NULL, NULL};
    unsigned long long mib = 0, rate = 0, kib[MI_COUNT];
    int n = split_fields(args, f, 2);

    if (n < 1)
        return fail(out, "usage: memhog MIB [MIB_PER_S] (MIB 0 stops the hog)");
    if (parse_u64_arg(f[0], "MIB", &mib, out) < 0 ||
        (n == 2 && parse_u64_arg(f[1], "MIB_PER_S", &rate, out) < 0))
        return -1;
    if (rate > MEMHOG_MAX_RATE)
        return fail(out, "MIB_PER_S %llu is more than %llu", rate, MEMHOG_MAX_RATE);
    if (mib > 0) {
        if (read_meminfo(kib, out) < 0)
            return -1;
        unsigned long long limit = kib[MI_TOTAL] / 1024 * MEMHOG_LIMIT_FACTOR;
        if (mib > limit || mib > (unsigned long long)(SIZE_MAX >> 20))
            return fail(out, "MIB %llu is more than %llu x MemTotal (%llu MiB)", mib,
                        MEMHOG_LIMIT_FACTOR, limit);
    }
    pid_t old = hog.state == HOG_RUNNING ? hog.pid : 0;
    if (memhog_kill(out) < 0)
        return -1;
    if (mib == 0) {
        buf_printf(out, "%d", (int)(hog.state == HOG_STOPPED ? old : 0));
        return 0;
    }
    if (hog.shared)
        munmap(hog.shared, sizeof(*hog.shared));
    memset(&hog, 0, sizeof(hog));
    struct memhog_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return fail(out, "mmap: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        munmap(sh, sizeof(*sh));
        return fail(out, "fork: %s", strerror(e));
    }
    if (pid == 0)
        memhog_child(sh, mib, rate, parent);
    hog.state = HOG_RUNNING;
    hog.pid = pid;
    hog.target_kib = mib * 1024;
    hog.shared = sh;
    buf_printf(out, "%d", (int)pid);
    return 0;
}

static const char *signal_name(int sig, char *tmp, size_t size)
{
    static const struct {
        int sig;
        const char *name;
    } names[] = {
        {SIGKILL, "KILL"}, {SIGTERM, "TERM"}, {SIGSEGV, "SEGV"}, {SIGBUS, "BUS"},
        {SIGABRT, "ABRT"}, {SIGINT, "INT"},   {SIGHUP, "HUP"},   {SIGQUIT, "QUIT"},
        {SIGILL, "ILL"},   {SIGFPE, "FPE"},   {SIGTRAP, "TRAP"}, {SIGSYS, "SYS"},
        {SIGPIPE, "PIPE"}, {SIGALRM, "ALRM"}, {SIGUSR1, "USR1"}, {SIGUSR2, "USR2"},
        {SIGXCPU, "XCPU"}, {SIGXFSZ, "XFSZ"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].sig == sig)
            return names[i].name;
    snprintf(tmp, size, "%d", sig);
    return tmp;
}

static int verb_memhogstat(char *args, struct buf *out)
{
    char status[48], sig[16];
    unsigned long long touched = 0;
    unsigned done = 0;

    if (args && *args)
        return fail(out, "usage: memhogstat");
    memhog_reap(0);
    if (hog.shared) {
        /* done first: once it is 1, the final touched_kib (stored before) shows */
        done = __atomic_load_n(&hog.shared->done, __ATOMIC_ACQUIRE);
        touched = __atomic_load_n(&hog.shared->touched_kib, __ATOMIC_ACQUIRE);
    }
    if (hog.state == HOG_REAPED && WIFEXITED(hog.status))
        snprintf(status, sizeof(status), "exited %d", WEXITSTATUS(hog.status));
    else if (hog.state == HOG_REAPED && WIFSIGNALED(hog.status))
        snprintf(status, sizeof(status), "killed %s",
                 signal_name(WTERMSIG(hog.status), sig, sizeof(sig)));
    else
        snprintf(status, sizeof(status), "%s",
                 hog.state == HOG_NONE ? "none" : hog.state == HOG_RUNNING ? "running"
                 : hog.state == HOG_STOPPED ? "stopped" : "unknown");
    buf_printf(out, "pid=%d touched_kib=%llu target_kib=%llu done=%u alive=%d status=%s",
               (int)hog.pid, touched, hog.target_kib, done ? 1U : 0U,
               hog.state == HOG_RUNNING, status);
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
    {"usbrelease", verb_usbrelease}, {"usbepfuzz", verb_usbepfuzz},
    {"hcilist", verb_hcilist}, {"hciup", verb_hciup}, {"hciinfo", verb_hciinfo},
    {"hcicmd", verb_hcicmd}, {"lescan", verb_lescan}, {"hcirtt", verb_hcirtt},
    {"l2send", verb_l2send}, {"pcmplay", verb_pcmplay}, {"pcmrec", verb_pcmrec},
    {"ctllist", verb_ctllist}, {"ctlset", verb_ctlset},
    {"mem", verb_mem},     {"memhog", verb_memhog}, {"memhogstat", verb_memhogstat},
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
        /* a memhog child that ended is reaped within a second (no zombie) */
        if (memhog_reap(0)) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int r = poll(&pfd, 1, 1000);
            if (r == 0 || (r < 0 && errno == EINTR))
                continue;
        }
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
