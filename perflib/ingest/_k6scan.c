/*
 * perflib._k6scan: k6 `--out json` NDJSON bytes -> per-series sample columns, in one pass.
 *
 * Why C: a cold `perflib summarize` is bound by reading the JSON. DuckDB's JSON reader spends
 * about 0.23 CPU-s on an 84 MB file before any statistic is computed (docs/ingest.md); this
 * scanner reads the one line shape k6 writes, touching each byte once, in a fraction of that.
 * Statistics are NOT computed here: they stay in numpy (perflib.ingest._fast_summary), so this
 * file only turns bytes into numbers.
 *
 * Strict by design. It accepts only lines exactly as k6 v1.x writes them:
 *
 *   {"type":"Metric",...}   returned whole; Python's json decodes and checks them
 *   {"metric":"M","type":"Point","data":{"time":"T","value":V,"tags":null|{"k":"v",...}
 *       [,"metadata":null|{"k":"v",...}]}}
 *
 * Anything else (another key order, a space, a blank line, an unterminated last line, a bad
 * time, invalid UTF-8, a line longer than max_line) stops the scan and returns the reason as
 * a str. The caller then uses the general DuckDB reader, which counts and reports every line
 * it skips; so this reader never has to decide what to drop, and loses nothing.
 *
 * The GIL is released while the file is read and parsed (progress spinners and imports in other
 * threads go on); a gzip file (gz=True) is inflated here too, member after member, and a
 * stream that stops early or is corrupt is handed over like any other defect.
 *
 * scan(fd, gz, keys, max_line) -> str (why the file is handed over) or a tuple:
 *   (lines, metric_lines, metric_names, tag_values, series, time_min_ns, time_max_ns)
 *   lines         physical lines read (every one of them parsed)
 *   metric_lines  list[bytes]: the Metric lines, in file order
 *   metric_names  list[bytes]: distinct Point metric names (no escapes), by first appearance
 *   tag_values    list[list[bytes]]: per requested key, its distinct raw JSON string bodies
 *                 (escapes kept: decode with json when a backslash is present)
 *   series        list of (metric_id, (value_id or -1 per key), values: bytes of float64 in
 *                 file order, time of the latest sample in ns, its line number, its value,
 *                 Neumaier sum of the values and its compensation)
 *                 A series is one metric + one combination of the requested tag values.
 *   time_min_ns, time_max_ns over all Points (None when there are none)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_KEYS 32

/* ------------------------------------------------------------------ growable buffer */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, size_t len) {
    if (len == 0) return 0; /* memcpy(NULL, ..., 0) is undefined */
    if (buf_reserve(b, len) < 0) return -1;
    memcpy(b->p + b->n, src, len);
    b->n += len;
    return 0;
}

/* ------------------------------------------------------------------ string interning */

typedef struct {
    uint64_t hash;
    int32_t id; /* -1: empty slot */
} Slot;

typedef struct {
    size_t off, len;
} Span;

/* Open-addressing hash set of byte strings -> dense ids 0, 1, 2, ... */
typedef struct {
    Slot *slots;
    size_t mask;
    Buf arena; /* the bytes of every entry */
    Buf spans; /* Span per id */
    int32_t count;
} Intern;

static uint64_t fnv1a(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int intern_init(Intern *t) {
    memset(t, 0, sizeof *t);
    t->mask = 63;
    t->slots = malloc((t->mask + 1) * sizeof(Slot));
    if (!t->slots) return -1;
    for (size_t i = 0; i <= t->mask; i++) t->slots[i].id = -1;
    return 0;
}

static void intern_free(Intern *t) {
    free(t->slots);
    free(t->arena.p);
    free(t->spans.p);
}

static int intern_grow(Intern *t) {
    size_t mask = t->mask * 2 + 1;
    Slot *slots = malloc((mask + 1) * sizeof(Slot));
    if (!slots) return -1;
    for (size_t i = 0; i <= mask; i++) slots[i].id = -1;
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->slots[i].id < 0) continue;
        size_t j = t->slots[i].hash & mask;
        while (slots[j].id >= 0) j = (j + 1) & mask;
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return 0;
}

/* The id of s (added when new); -1 when out of memory. */
static int32_t intern(Intern *t, const char *s, size_t len) {
    uint64_t h = fnv1a(s, len);
    size_t i = h & t->mask;
    const Span *spans = (const Span *)t->spans.p;
    for (;; i = (i + 1) & t->mask) {
        Slot *sl = &t->slots[i];
        if (sl->id < 0) break;
        if (sl->hash == h && spans[sl->id].len == len &&
            (len == 0 || memcmp(t->arena.p + spans[sl->id].off, s, len) == 0))
            return sl->id;
    }
    if (t->count == INT32_MAX) return -1;
    Span sp = {t->arena.n, len};
    if (buf_put(&t->arena, s, len) < 0 || buf_put(&t->spans, &sp, sizeof sp) < 0) return -1;
    t->slots[i].hash = h;
    t->slots[i].id = t->count++;
    if ((size_t)t->count * 2 > t->mask && intern_grow(t) < 0) return -1;
    return t->count - 1;
}

static PyObject *intern_list(const Intern *t) {
    PyObject *out = PyList_New(t->count);
    if (!out) return NULL;
    const Span *spans = (const Span *)t->spans.p;
    for (int32_t i = 0; i < t->count; i++) {
        PyObject *b = PyBytes_FromStringAndSize(t->arena.p + spans[i].off, spans[i].len);
        if (!b) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, b);
    }
    return out;
}

/* ------------------------------------------------------------------ field parsers */

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF), as DuckDB's reader requires. */
static int utf8_ok(const unsigned char *s, const unsigned char *end) {
    while (s < end) {
        unsigned c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        int n;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07;
        else return 0;
        if (end - s <= n) return 0;
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        s += n + 1;
    }
    return 1;
}

static int is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The code unit of a \uXXXX escape at p (p[0] == '\\'), or -1 when it is not one. */
static long escape_unit(const char *p, const char *end) {
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!is_hex(c)) return -1;
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* p is just after an opening quote. Returns the closing quote, or NULL when the string is
 * not valid JSON (bad escape, control byte, bad UTF-8, no closing quote before end). */
static const char *scan_string(const char *p, const char *end, int *escaped) {
    const char *start = p;
    int high = 0;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            if (high && !utf8_ok((const unsigned char *)start, (const unsigned char *)p))
                return NULL;
            return p;
        }
        if (c == '\\') {
            *escaped = 1;
            if (end - p < 2) return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u': {
                /* UTF-16 surrogates only in pairs: a lone one is not text (DuckDB refuses
                 * the line, so the general path counts it). */
                long u = escape_unit(p, end);
                if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return NULL;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    long lo = escape_unit(p + 6, end);
                    if (lo < 0xDC00 || lo > 0xDFFF) return NULL;
                    p += 6;
                }
                p += 6;
                continue;
            }
            default:
                return NULL;
            }
        }
        if (c < 0x20) return NULL;
        if (c >= 0x80) high = 1;
        p++;
    }
    return NULL;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The "C" locale for strtod_l: '.' is the decimal point whatever the process locale says. */
static locale_t c_locale;

/* A JSON number (RFC 8259 grammar) at p. Returns the byte after it, or NULL.
 * Exactly rounded: Clinger's fast path (an integer mantissa < 2^53 times or divided by an
 * exactly representable 10^k, k <= 22, is one correctly rounded IEEE operation), else the C
 * library's strtod_l (correctly rounded in glibc; thread-safe, so it needs no GIL, unlike
 * CPython's dtoa). The text was checked against JSON's grammar first, so strtod's extras
 * (hex, inf, nan) cannot occur; overflow gives +-inf, as float() does. */
static const char *parse_number(const char *p, const char *end, double *out) {
    const char *start = p;
    int neg = 0, exact = 1;
    uint64_t mant = 0;
    int64_t exp10 = 0;
    if (p < end && *p == '-') neg = 1, p++;
    if (p >= end || !is_digit(*p)) return NULL;
    if (*p == '0') {
        p++;
    } else {
        for (; p < end && is_digit(*p); p++) {
            if (mant < 100000000000000000ULL) mant = mant * 10 + (uint64_t)(*p - '0');
            else exact = 0, exp10++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return NULL;
        for (; p < end && is_digit(*p); p++) {
            if (mant < 100000000000000000ULL) mant = mant * 10 + (uint64_t)(*p - '0'), exp10--;
            else if (*p != '0') exact = 0;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        int64_t e = 0;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p == '-', p++;
        if (p >= end || !is_digit(*p)) return NULL;
        for (; p < end && is_digit(*p); p++)
            if (e < 100000) e = e * 10 + (*p - '0');
            else exact = 0; /* clipped: leave it to strtod */
        exp10 += eneg ? -e : e;
    }
    if (exact && mant == 0) {
        *out = neg ? -0.0 : 0.0;
        return p;
    }
    if (exact && mant <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mant;
        v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
        *out = neg ? -v : v;
        return p;
    }
    char local[128], *tmp = local;
    size_t len = (size_t)(p - start);
    if (len >= sizeof local && !(tmp = malloc(len + 1))) return NULL;
    memcpy(tmp, start, len);
    tmp[len] = '\0';
    char *stop = NULL;
    double v = strtod_l(tmp, &stop, c_locale);
    int ok = stop == tmp + len;
    if (tmp != local) free(tmp);
    if (!ok) return NULL;
    *out = v;
    return p;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i])) return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible
 * Low-Level Date Algorithms", days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 3339 as Go's time.RFC3339Nano writes it: YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)
 * -> ns since the epoch, UTC. Years outside 1678-2261 do not fit datetime64[ns]: rejected
 * (DuckDB's TIMESTAMP_NS rejects them too, so the general path reports them). */
static int parse_time(const char *s, const char *end, int64_t *ns) {
    int y, mo, d, h, mi, sec;
    if (end - s < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':')
        return 0;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        return 0;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1678 || y > 2261 || mo < 1 || mo > 12 || d < 1 ||
        d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 || sec > 59)
        return 0;
    const char *p = s + 19;
    int64_t frac = 0;
    if (p < end && *p == '.') {
        p++;
        int n = 0;
        for (; p < end && is_digit(*p); p++, n++) {
            if (n == 9) return 0;
            frac = frac * 10 + (*p - '0');
        }
        if (n == 0) return 0;
        for (; n < 9; n++) frac *= 10;
    }
    int64_t offset_min = 0;
    if (p < end && *p == 'Z') {
        p++;
    } else if (end - p == 6 && (*p == '+' || *p == '-') && p[3] == ':') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > 23 || om > 59) return 0;
        offset_min = (*p == '-' ? -1 : 1) * (int64_t)(oh * 60 + om);
        p += 6;
    } else {
        return 0;
    }
    if (p != end) return 0;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    *ns = secs * 1000000000LL + frac;
    return 1;
}

/* ------------------------------------------------------------------ the scanner */

typedef struct {
    Buf values; /* float64 per sample, file order */
    int64_t tmax, tline; /* time of the latest sample, and its line */
    double last;         /* its value */
    double sum, comp;    /* Neumaier's compensated sum: sum + comp, cancellation-proof */
} Series;

typedef struct {
    Py_ssize_t nkeys;
    const char *key[MAX_KEYS];
    Py_ssize_t keylen[MAX_KEYS];
    Intern metrics, series, values[MAX_KEYS];
    Buf series_data; /* Series per series id */
    Buf metric_lines; /* the Metric lines' bytes, back to back */
    Buf metric_spans; /* Span of each in metric_lines */
    PyThreadState *released; /* the GIL is released during the scan */
    int64_t tmin, tmax;
    int64_t points;
    int64_t line; /* the line being parsed (1-based) */
} Scanner;

#define LIT(p, end, s) ((size_t)((end) - (p)) >= sizeof(s) - 1 && memcmp((p), (s), sizeof(s) - 1) == 0)

/* A {"k":"v",...} object of string values, or null. For tags (want != NULL) the values of
 * the requested keys are interned into ids[]; metadata (want == NULL) is only validated. */
static const char *parse_string_map(Scanner *sc, const char *p, const char *end,
                                    int32_t *ids, const char **why) {
    if (LIT(p, end, "null")) return p + 4;
    if (p >= end || *p != '{') return *why = "tags/metadata are not an object or null", NULL;
    p++;
    if (p < end && *p == '}') return p + 1;
    for (;;) {
        int esc = 0;
        if (p >= end || *p != '"') return *why = "expected a tag key", NULL;
        const char *k = p + 1, *kq = scan_string(k, end, &esc);
        if (!kq || esc) return *why = "a tag key is not a plain JSON string", NULL;
        if (end - kq < 3 || kq[1] != ':' || kq[2] != '"')
            return *why = "a tag value is not a JSON string", NULL;
        const char *v = kq + 3, *vq = scan_string(v, end, &esc);
        if (!vq) return *why = "a tag value is not a valid JSON string", NULL;
        if (ids) {
            for (Py_ssize_t i = 0; i < sc->nkeys; i++) {
                if (sc->keylen[i] != kq - k || memcmp(sc->key[i], k, (size_t)(kq - k)) != 0)
                    continue;
                if (ids[i] >= 0) return *why = "a tag key appears twice", NULL;
                ids[i] = intern(&sc->values[i], v, (size_t)(vq - v));
                if (ids[i] < 0) return *why = "out of memory", NULL;
                break;
            }
        }
        p = vq + 1;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}') return p + 1;
        return *why = "expected , or } in tags", NULL;
    }
}

/* One line (without its newline). Returns NULL on success, else why it is not k6's shape. */
static const char *parse_line(Scanner *sc, const char *p, const char *end) {
    const char *why = NULL;
    if (LIT(p, end, "{\"type\":\"Metric\",")) {
        Span sp = {sc->metric_lines.n, (size_t)(end - p)};
        if (buf_put(&sc->metric_lines, p, sp.len) < 0 ||
            buf_put(&sc->metric_spans, &sp, sizeof sp) < 0)
            return "out of memory";
        return NULL;
    }
    if (!LIT(p, end, "{\"metric\":\"")) return "not a k6 Point or Metric line in k6's key order";
    int esc = 0;
    const char *m = p + 11, *mq = scan_string(m, end, &esc);
    if (!mq || esc || mq == m) return "the metric name is empty or not a plain JSON string";
    p = mq + 1;
    static const char point[] = ",\"type\":\"Point\",\"data\":{\"time\":\"";
    if (!LIT(p, end, point)) return "not a Point line in k6's key order";
    p += sizeof point - 1;
    const char *t = p, *tq = memchr(t, '"', (size_t)(end - t));
    int64_t ns;
    if (!tq || !parse_time(t, tq, &ns)) return "the time is not RFC 3339 as k6 writes it";
    p = tq + 1;
    if (!LIT(p, end, ",\"value\":")) return "expected \"value\" after \"time\"";
    double value;
    p = parse_number(p + 9, end, &value);
    if (!p) return "the value is not a JSON number";
    if (!LIT(p, end, ",\"tags\":")) return "expected \"tags\" after \"value\"";
    int32_t key[1 + MAX_KEYS];
    for (Py_ssize_t i = 0; i < sc->nkeys; i++) key[1 + i] = -1;
    p = parse_string_map(sc, p + 8, end, key + 1, &why);
    if (!p) return why;
    if (LIT(p, end, ",\"metadata\":")) {
        p = parse_string_map(sc, p + 12, end, NULL, &why);
        if (!p) return why;
    }
    if (!(end - p == 2 && p[0] == '}' && p[1] == '}')) return "unexpected bytes after tags";

    key[0] = intern(&sc->metrics, m, (size_t)(mq - m));
    if (key[0] < 0) return "out of memory";
    int32_t sid = intern(&sc->series, (const char *)key, (size_t)(1 + sc->nkeys) * sizeof(int32_t));
    if (sid < 0) return "out of memory";
    if ((size_t)sid * sizeof(Series) == sc->series_data.n) {
        Series fresh = {{NULL, 0, 0}, INT64_MIN, 0, 0.0, 0.0, 0.0};
        if (buf_put(&sc->series_data, &fresh, sizeof fresh) < 0) return "out of memory";
    }
    Series *s = (Series *)sc->series_data.p + sid;
    if (buf_put(&s->values, &value, sizeof value) < 0) return "out of memory";
    if (ns >= s->tmax) s->tmax = ns, s->tline = sc->line, s->last = value; /* ties: later line */
    double acc = s->sum + value; /* Neumaier (Kahan-Babuska), as DuckDB's fsum */
    if (isfinite(acc)) /* past an infinity the compensation is meaningless (inf - inf) */
        s->comp += fabs(s->sum) >= fabs(value) ? (s->sum - acc) + value : (value - acc) + s->sum;
    s->sum = acc;
    if (sc->points == 0 || ns < sc->tmin) sc->tmin = ns;
    if (sc->points == 0 || ns > sc->tmax) sc->tmax = ns;
    sc->points++;
    return NULL;
}

static void scanner_free(Scanner *sc) {
    intern_free(&sc->metrics);
    intern_free(&sc->series);
    for (Py_ssize_t i = 0; i < sc->nkeys; i++) intern_free(&sc->values[i]);
    Series *s = (Series *)sc->series_data.p;
    for (size_t i = 0; i < sc->series_data.n / sizeof(Series); i++) free(s[i].values.p);
    free(sc->series_data.p);
    free(sc->metric_lines.p);
    free(sc->metric_spans.p);
}

static PyObject *result(Scanner *sc, long long lines) {
    PyObject *decls = NULL, *names = NULL, *tags = NULL, *series = NULL;
    Py_ssize_t nd = (Py_ssize_t)(sc->metric_spans.n / sizeof(Span));
    if (!(decls = PyList_New(nd))) goto fail;
    for (Py_ssize_t i = 0; i < nd; i++) {
        const Span *sp = (const Span *)sc->metric_spans.p + i;
        PyObject *b = PyBytes_FromStringAndSize(sc->metric_lines.p + sp->off, (Py_ssize_t)sp->len);
        if (!b) goto fail;
        PyList_SET_ITEM(decls, i, b);
    }
    if (!(names = intern_list(&sc->metrics)) || !(tags = PyList_New(sc->nkeys))) goto fail;
    for (Py_ssize_t i = 0; i < sc->nkeys; i++) {
        PyObject *l = intern_list(&sc->values[i]);
        if (!l) goto fail;
        PyList_SET_ITEM(tags, i, l);
    }
    Py_ssize_t n = (Py_ssize_t)(sc->series_data.n / sizeof(Series));
    if (!(series = PyList_New(n))) goto fail;
    const Span *spans = (const Span *)sc->series.spans.p;
    for (Py_ssize_t i = 0; i < n; i++) {
        Series *s = (Series *)sc->series_data.p + i;
        const int32_t *key = (const int32_t *)(sc->series.arena.p + spans[i].off);
        PyObject *ids = PyTuple_New(sc->nkeys);
        if (!ids) goto fail;
        for (Py_ssize_t k = 0; k < sc->nkeys; k++) {
            PyObject *v = PyLong_FromLong(key[1 + k]);
            if (!v) {
                Py_DECREF(ids);
                goto fail;
            }
            PyTuple_SET_ITEM(ids, k, v);
        }
        PyObject *item = Py_BuildValue("(iNy#LLddd)", key[0], ids, s->values.p,
                                       (Py_ssize_t)s->values.n, (long long)s->tmax,
                                       (long long)s->tline, s->last, s->sum, s->comp);
        if (!item) goto fail;
        free(s->values.p); /* copied into the bytes object: free as we go */
        s->values.p = NULL;
        s->values.n = s->values.cap = 0;
        PyList_SET_ITEM(series, i, item);
    }
    PyObject *tmin = sc->points ? PyLong_FromLongLong(sc->tmin) : Py_NewRef(Py_None);
    PyObject *tmax = sc->points ? PyLong_FromLongLong(sc->tmax) : Py_NewRef(Py_None);
    return Py_BuildValue("(LNNNNNN)", lines, decls, names, tags, series, tmin, tmax);
fail:
    Py_XDECREF(decls);
    Py_XDECREF(names);
    Py_XDECREF(tags);
    Py_XDECREF(series);
    return NULL;
}

/* The file's bytes, inflated when it is gzip. Runs without the GIL. */
typedef struct {
    int fd, gz, done, err; /* err: errno of a failed read */
    z_stream z;
    unsigned char *in;
    size_t in_cap;
} Source;

/* read(2) of the file's raw bytes, retried when a signal interrupts it; errno kept. */
static ssize_t source_raw(Source *src, void *dst, size_t cap, const char **why) {
    ssize_t n;
    do n = read(src->fd, dst, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0) src->err = errno, *why = "read error";
    return n;
}

/* Up to cap bytes into dst: their count, 0 at the end, -1 with *why on a defect. */
static ssize_t source_read(Source *src, char *dst, size_t cap, const char **why) {
    ssize_t n;
    if (!src->gz) return source_raw(src, dst, cap, why);
    if (src->done) return 0;
    src->z.next_out = (unsigned char *)dst;
    src->z.avail_out = (uInt)(cap > UINT32_MAX ? UINT32_MAX : cap);
    for (;;) {
        if (src->z.avail_in == 0) {
            if ((n = source_raw(src, src->in, src->in_cap, why)) < 0) return -1;
            if (n == 0) return *why = "the gzip stream stops early (truncated?)", -1;
            src->z.next_in = src->in;
            src->z.avail_in = (uInt)n;
        }
        int rc = inflate(&src->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            /* Another gzip member may follow (concatenated files are valid gzip). */
            if (src->z.avail_in == 0) {
                if ((n = source_raw(src, src->in, src->in_cap, why)) < 0) return -1;
                src->z.next_in = src->in;
                src->z.avail_in = (uInt)n;
            }
            if (src->z.avail_in == 0) src->done = 1;
            else if (inflateReset(&src->z) != Z_OK) return *why = "gzip error", -1;
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return *why = "the gzip stream is corrupt", -1;
        }
        size_t produced = cap - src->z.avail_out;
        if (produced > 0 || src->done) return (ssize_t)produced;
    }
}

static PyObject *handover(long long line, const char *why) {
    return PyUnicode_FromFormat("line %lld: %s", line, why);
}

static PyObject *k6scan_scan(PyObject *self, PyObject *args) {
    (void)self;
    int fd, gz;
    PyObject *keys;
    Py_ssize_t max_line;
    if (!PyArg_ParseTuple(args, "ipO!n", &fd, &gz, &PyTuple_Type, &keys, &max_line)) return NULL;
    if (PyTuple_GET_SIZE(keys) > MAX_KEYS) {
        PyErr_Format(PyExc_ValueError, "at most %d tag keys", MAX_KEYS);
        return NULL;
    }
    if (max_line < 64) {
        PyErr_SetString(PyExc_ValueError, "max_line must be at least 64");
        return NULL;
    }
    Scanner sc;
    memset(&sc, 0, sizeof sc);
    sc.nkeys = PyTuple_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < sc.nkeys; i++) {
        PyObject *k = PyTuple_GET_ITEM(keys, i);
        if (!PyBytes_Check(k)) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            return NULL;
        }
        sc.key[i] = PyBytes_AS_STRING(k); /* borrowed: keys outlives the scan */
        sc.keylen[i] = PyBytes_GET_SIZE(k);
    }
    int ok = intern_init(&sc.metrics) == 0 && intern_init(&sc.series) == 0;
    for (Py_ssize_t i = 0; ok && i < sc.nkeys; i++) ok = intern_init(&sc.values[i]) == 0;
    size_t chunk = 1 << 20, cap = (size_t)max_line + chunk;
    Source src;
    memset(&src, 0, sizeof src);
    src.fd = fd;
    src.gz = gz;
    src.in_cap = 256 * 1024;
    char *buf = ok ? malloc(cap) : NULL;
    if (buf && gz) {
        src.in = malloc(src.in_cap);
        if (!src.in || inflateInit2(&src.z, 16 + MAX_WBITS) != Z_OK) { /* gzip wrapper only */
            free(src.in);
            free(buf);
            buf = NULL;
        }
    }
    if (!buf) {
        scanner_free(&sc);
        return PyErr_NoMemory();
    }

    long long line = 0, bad_line = 0;
    size_t have = 0;
    const char *why = NULL;
    sc.released = PyEval_SaveThread();
    for (;;) {
        ssize_t n = source_read(&src, buf + have, cap - have, &why);
        if (n < 0) {
            bad_line = line + 1;
            break;
        }
        have += (size_t)n;
        char *p = buf, *end = buf + have, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            sc.line = ++line;
            if (nl - p > max_line) why = "longer than the longest line read";
            else why = parse_line(&sc, p, nl);
            if (why) break;
            p = nl + 1;
        }
        if (why) {
            bad_line = line;
            break;
        }
        size_t rest = (size_t)(end - p);
        if (n == 0) {
            if (rest) why = "the last line is unterminated (cut mid-write?)", bad_line = line + 1;
            break;
        }
        if (rest > (size_t)max_line) {
            why = "longer than the longest line read", bad_line = line + 1;
            break;
        }
        memmove(buf, p, rest);
        have = rest;
    }
    PyEval_RestoreThread(sc.released);
    PyObject *out;
    if (src.err) {
        errno = src.err;
        out = PyErr_SetFromErrno(PyExc_OSError);
    } else {
        out = why ? handover(bad_line, why) : result(&sc, line);
    }
    if (gz) {
        inflateEnd(&src.z);
        free(src.in);
    }
    free(buf);
    scanner_free(&sc);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", k6scan_scan, METH_VARARGS,
     "scan(fd, gz, keys, max_line) -> tuple | str: k6 NDJSON from fd as per-series columns, or "
     "why the file is not in k6's exact line shape (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "perflib._k6scan",
    "Strict, fast reader of k6 --out json NDJSON (see perflib/_k6scan.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__k6scan(void) {
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!c_locale) return PyErr_SetFromErrno(PyExc_OSError);
    return PyModule_Create(&module);
}
