/*
 * OpenTelemetry consistent probability sampling: thresholds, randomness,
 * the ot tracestate entry, the head decision.
 *
 * "probability-sampling" below is specification/trace/
 * tracestate-probability-sampling.md, "tracestate-handling" is
 * tracestate-handling.md and "sdk" is sdk.md, all in
 * open-telemetry/opentelemetry-specification.
 */

#include <string.h>

#include <vaquero/vaquero.h>
#include <vaquero/sampler.h>

/*
 * Characters of an ot value (tracestate-handling "Key", "Value"):
 *   key   = lcalpha *(lcalpha / DIGIT)
 *   value = *(chr)
 *   chr   = ucalpha / lcalpha / DIGIT / "." / "_" / "-"
 * ":" and ";" separate: they are in no class.
 */
#define OT_KEY1  0x01
#define OT_KEY   0x02
#define OT_VAL   0x04

#define L  (OT_KEY1 | OT_KEY | OT_VAL)
#define D  (OT_KEY | OT_VAL)
#define V  OT_VAL

static const uint8_t  otchar[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x10 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, V, V, 0,    /* 0x20 */
    D, D, D, D, D, D, D, D, D, D, 0, 0, 0, 0, 0, 0,    /* 0x30 */
    0, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,    /* 0x40 */
    V, V, V, V, V, V, V, V, V, V, V, 0, 0, 0, 0, V,    /* 0x50 */
    0, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,    /* 0x60 */
    L, L, L, L, L, L, L, L, L, L, L, 0, 0, 0, 0, 0,    /* 0x70 */
    /* 0x80-0xff: 0 */
};

#undef L
#undef D
#undef V

/*
 * th and rv digits: "hexdigit = DIGIT ; a-f" (tracestate-handling).
 * 0x10 | value, 0 for the rest, uppercase included.
 */
static const uint8_t  hexlc[256] = {
    ['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14,
    ['5'] = 0x15, ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19,
    ['a'] = 0x1a, ['b'] = 0x1b, ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e,
    ['f'] = 0x1f
};

static const char  hexdigits[] = "0123456789abcdef";

/* n lowercase hex digits into v; 0 when one is not */
static inline int
hex_value(const unsigned char *s, size_t n, uint64_t *v)
{
    uint64_t  r;
    unsigned  all, c;
    size_t    i;

    r = 0;
    all = 0x10;

    for (i = 0; i < n; i++) {
        c = hexlc[s[i]];
        all &= c;
        r = (r << 4) | (c & 0x0f);
    }

    *v = r;

    return all != 0;
}

/* 14 hex digits of a 56-bit value */
static inline void
hex14(uint64_t v, char *out)
{
    int  i;

    for (i = VQ_SAMPLE_HEX_MAX - 1; i >= 0; i--) {
        out[i] = hexdigits[v & 0x0f];
        v >>= 4;
    }
}

/* ---- thresholds ----------------------------------------------------- */

/*
 * probability-sampling "Converting floating-point probability to
 * threshold value".  The spec's example rounds 1 + (1 - p) in a double
 * and caps the digits at 12 for that reason; here p is taken apart into
 * its exact integer mantissa and exponent, so every digit up to 14 (56
 * bits) is exact, and the rounding is the example's: half of the last
 * kept digit is added, the rest cut off.
 */
int
vq_sample_threshold(double p, unsigned precision, uint64_t *threshold)
{
    uint64_t  bits, m, si, frac, half, t;
    unsigned  digits, cut;
    int       e, sh;

    if (threshold == NULL || precision < 1
        || precision > VQ_SAMPLE_HEX_MAX || !(p >= 0.0 && p <= 1.0))
    {
        return VQ_EINVAL;
    }

    /* "never" is not probability sampling: no threshold, no th */
    if (p == 0.0) {
        *threshold = VQ_SAMPLE_NEVER;
        return VQ_OK;
    }

    /* the example's special case: 100% is th "0" */
    if (p == 1.0) {
        *threshold = 0;
        return VQ_OK;
    }

    /* p = m * 2^(e - 52), m of 53 bits (IEEE 754 binary64, normal) */
    memcpy(&bits, &p, sizeof(bits));
    e = (int) ((bits >> 52) & 0x7ff) - 1023;

    /* "valid in the range 2^-56 through 1" (subnormals are far below) */
    if (e < -VQ_SAMPLE_BITS) {
        return VQ_EINVAL;
    }

    m = (bits & ((((uint64_t) 1) << 52) - 1)) | (((uint64_t) 1) << 52);

    /* S = p * 2^56 = m * 2^(e + 4) = si + frac / 2^-sh, e + 4 in [-52, 3] */
    sh = e + 4;

    if (sh >= 0) {
        si = m << sh;
        frac = 0;
        half = 0;

    } else {
        si = m >> -sh;
        frac = m & ((((uint64_t) 1) << -sh) - 1);
        half = ((uint64_t) 1) << (-sh - 1);
    }

    /*
     * "Raise precision by the number of leading 'f' digits": the example's
     * precision + exp // -4, with frexp's exponent e + 1 <= 0.
     */
    digits = precision + (unsigned) (-(e + 1)) / 4;
    if (digits > VQ_SAMPLE_HEX_MAX) {
        digits = VQ_SAMPLE_HEX_MAX;
    }

    cut = 4 * (VQ_SAMPLE_HEX_MAX - digits);

    /*
     * T = floor(2^56 - S + 2^(cut-1)) with its low cut bits cleared.  A
     * fractional S only takes one off the integer part.  It cannot reach
     * 2^56: S >= 1, and the extra digits keep S above half a digit.
     */
    if (cut > 0) {
        t = VQ_SAMPLE_NEVER - si + (((uint64_t) 1) << (cut - 1)) - (frac != 0);
        t = (t >> cut) << cut;

    } else {
        t = VQ_SAMPLE_NEVER - si - (frac > half);
    }

    *threshold = t;

    return VQ_OK;
}

/*
 * probability-sampling "Converting integer threshold to a th-value":
 * hex, trailing zeros omitted; tracestate-handling: "0" is 100%.
 */
size_t
vq_sample_th_format(uint64_t threshold, char *out)
{
    size_t  n;

    if (threshold >= VQ_SAMPLE_NEVER) {
        return 0;
    }

    if (threshold == 0) {
        out[0] = '0';
        return 1;
    }

    hex14(threshold, out);

    n = VQ_SAMPLE_HEX_MAX;
    while (out[n - 1] == '0') {
        n--;
    }

    return n;
}

/*
 * tracestate-handling "Sampling threshold value th": "between 1 and 14
 * lowercase hexadecimal digits ... extend the value with trailing zeros
 * to make 14 digits".
 */
int
vq_sample_th_parse(const char *s, size_t len, uint64_t *threshold)
{
    uint64_t  v;

    if (s == NULL || threshold == NULL || len == 0
        || len > VQ_SAMPLE_HEX_MAX
        || !hex_value((const unsigned char *) s, len, &v))
    {
        return VQ_EINVAL;
    }

    *threshold = v << (4 * (VQ_SAMPLE_HEX_MAX - len));

    return VQ_OK;
}

/*
 * tracestate-handling "Explicit randomness value rv": "exactly 14
 * lower-case hexadecimal digits".
 */
int
vq_sample_rv_parse(const char *s, size_t len, uint64_t *rv)
{
    uint64_t  v;

    if (s == NULL || rv == NULL || len != VQ_SAMPLE_HEX_MAX
        || !hex_value((const unsigned char *) s, len, &v))
    {
        return VQ_EINVAL;
    }

    *rv = v;

    return VQ_OK;
}

void
vq_sample_rv_format(uint64_t rv, char *out)
{
    hex14(rv & VQ_SAMPLE_R_MAX, out);
}

/* ---- randomness ----------------------------------------------------- */

/*
 * probability-sampling "Randomness Value": "the least-significant 56 bits
 * of the TraceID", W3C Trace Context Level 2 "Random Trace ID Flag": the
 * right-most 7 bytes.
 */
uint64_t
vq_sample_trace_randomness(const uint8_t trace_id[VQ_TRACE_ID_SIZE])
{
    const uint8_t  *p = trace_id + 8;

    /* bytes 8..15 as one big-endian load (compilers make it mov + bswap) */
    return ((uint64_t) p[0] << 56 | (uint64_t) p[1] << 48
            | (uint64_t) p[2] << 40 | (uint64_t) p[3] << 32
            | (uint64_t) p[4] << 24 | (uint64_t) p[5] << 16
            | (uint64_t) p[6] << 8 | (uint64_t) p[7])
           & VQ_SAMPLE_R_MAX;
}

/*
 * XXH64 (xxHash, Yann Collet; the algorithm as its xxhash_spec.md fixes
 * it, seed 0).  Chosen because it is fast on short keys, passes SMHasher,
 * and has the same output in every language, so that a backend can repeat
 * a decision.  Never change it: decisions of existing keys would move.
 */
#define P64_1  0x9E3779B185EBCA87ULL
#define P64_2  0xC2B2AE3D27D4EB4FULL
#define P64_3  0x165667B19E3779F9ULL
#define P64_4  0x85EBCA77C2B2AE63ULL
#define P64_5  0x27D4EB2F165667C5ULL

static inline uint64_t
rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* little-endian loads whatever the host, as the spec reads lanes */
static inline uint64_t
le64(const unsigned char *p)
{
    return (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
           | (uint64_t) p[3] << 24 | (uint64_t) p[4] << 32
           | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48
           | (uint64_t) p[7] << 56;
}

static inline uint64_t
le32(const unsigned char *p)
{
    return (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
           | (uint64_t) p[3] << 24;
}

static inline uint64_t
xxh64_round(uint64_t acc, uint64_t lane)
{
    acc += lane * P64_2;
    acc = rotl64(acc, 31);
    return acc * P64_1;
}

static inline uint64_t
xxh64_merge(uint64_t acc, uint64_t v)
{
    acc ^= xxh64_round(0, v);
    return acc * P64_1 + P64_4;
}

static uint64_t
xxh64(const unsigned char *p, size_t len)
{
    const unsigned char  *end = p + len;
    uint64_t              acc, v1, v2, v3, v4;

    if (len >= 32) {
        v1 = P64_1 + P64_2;
        v2 = P64_2;
        v3 = 0;
        v4 = 0 - P64_1;

        do {
            v1 = xxh64_round(v1, le64(p));
            v2 = xxh64_round(v2, le64(p + 8));
            v3 = xxh64_round(v3, le64(p + 16));
            v4 = xxh64_round(v4, le64(p + 24));
            p += 32;
        } while (end - p >= 32);

        acc = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        acc = xxh64_merge(acc, v1);
        acc = xxh64_merge(acc, v2);
        acc = xxh64_merge(acc, v3);
        acc = xxh64_merge(acc, v4);

    } else {
        acc = P64_5;
    }

    acc += (uint64_t) len;

    while (end - p >= 8) {
        acc ^= xxh64_round(0, le64(p));
        acc = rotl64(acc, 27) * P64_1 + P64_4;
        p += 8;
    }

    if (end - p >= 4) {
        acc ^= le32(p) * P64_1;
        acc = rotl64(acc, 23) * P64_2 + P64_3;
        p += 4;
    }

    while (p < end) {
        acc ^= *p++ * P64_5;
        acc = rotl64(acc, 11) * P64_1;
    }

    acc ^= acc >> 33;
    acc *= P64_2;
    acc ^= acc >> 29;
    acc *= P64_3;
    acc ^= acc >> 32;

    return acc;
}

uint64_t
vq_sample_key_randomness(const void *key, size_t len)
{
    static const unsigned char  none[1];

    /* the top bits: R >= T is decided by them first */
    return xxh64(len ? key : none, len) >> (64 - VQ_SAMPLE_BITS);
}

/* ---- the ot entry --------------------------------------------------- */

/* "a:" and ";" each: 85 members fill 256 characters */
#define OT_MAX_MEMBERS  ((VQ_OT_VALUE_MAX + 1) / 3)

/*
 * tracestate-handling: list = list-member *( ";" list-member ),
 * list-member = key ":" value; at most 256 characters; "the used keys
 * MUST be unique".  One pass; keys are compared by a hash first, so the
 * most members 256 characters hold with unique keys, 70, cost 70 * 69 / 2
 * integer compares.
 */
int
vq_ot_parse(const char *value, size_t len, vq_ot_t *ot)
{
    const unsigned char  *s = (const unsigned char *) value;
    uint32_t              hash[OT_MAX_MEMBERS], h;
    uint16_t              koff[OT_MAX_MEMBERS];
    uint8_t               klen[OT_MAX_MEMBERS];
    vq_ot_t               r;
    size_t                i, k, v, kl;
    unsigned              n, j;

    if (ot == NULL || (value == NULL && len != 0)
        || len > VQ_OT_VALUE_MAX)
    {
        return VQ_EINVAL;
    }

    memset(&r, 0, sizeof(r));
    r.value = value;
    r.len = (uint16_t) len;

    if (len == 0) {
        *ot = r;
        return VQ_OK;
    }

    n = 0;
    i = 0;

    for ( ;; ) {
        /* key: lcalpha first, no empty key (so no empty member) */
        k = i;

        if (i == len || !(otchar[s[i]] & OT_KEY1)) {
            return VQ_EINVAL;
        }

        h = 2166136261u;

        do {
            h = (h ^ s[i]) * 16777619u;
            i++;
        } while (i < len && (otchar[s[i]] & OT_KEY));

        if (i == len || s[i] != ':') {
            return VQ_EINVAL;
        }

        kl = i - k;

        /* value: possibly empty */
        v = ++i;

        while (i < len && (otchar[s[i]] & OT_VAL)) {
            i++;
        }

        if (i < len && s[i] != ';') {
            return VQ_EINVAL;
        }

        /* len <= 256 bounds n; this guards the arrays all the same */
        if (n == OT_MAX_MEMBERS) {
            return VQ_EINVAL;
        }

        for (j = 0; j < n; j++) {
            if (hash[j] == h && klen[j] == kl
                && memcmp(s + koff[j], s + k, kl) == 0)
            {
                return VQ_EINVAL;
            }
        }

        hash[n] = h;
        koff[n] = (uint16_t) k;
        klen[n] = (uint8_t) kl;
        n++;

        if (kl == 2 && s[k] == 't' && s[k + 1] == 'h') {
            r.th_start = (uint16_t) k;
            r.th_end = (uint16_t) i;
            r.flags |= vq_sample_th_parse(value + v, i - v, &r.th) == VQ_OK
                       ? VQ_OT_TH : VQ_OT_TH_BAD;

        } else if (kl == 2 && s[k] == 'r' && s[k + 1] == 'v') {
            r.rv_start = (uint16_t) k;
            r.rv_end = (uint16_t) i;
            r.flags |= vq_sample_rv_parse(value + v, i - v, &r.rv) == VQ_OK
                       ? VQ_OT_RV : VQ_OT_RV_BAD;
        }

        if (i == len) {
            break;
        }

        i++;    /* ";" */
    }

    *ot = r;

    return VQ_OK;
}

int
vq_ot_format(const vq_ot_t *ot, char *out, size_t out_size)
{
    const char  *s;
    size_t       cut[2][2], seg[3][2], need, prev, a, b, th_len;
    char         th[VQ_SAMPLE_HEX_MAX], *w;
    int          i, ncut, nseg;

    if (ot == NULL || (out == NULL && out_size != 0)) {
        return VQ_EINVAL;
    }

    if (((ot->flags & VQ_OT_TH) && ot->th >= VQ_SAMPLE_NEVER)
        || ((ot->flags & VQ_OT_RV) && ot->rv > VQ_SAMPLE_R_MAX))
    {
        return VQ_EINVAL;
    }

    /*
     * The other sub-keys are the value without its th and rv members (a
     * member is never empty, so end 0 means none): at most three runs,
     * each without the ";" that joined it to a cut member.
     */
    ncut = 0;

    if (ot->th_end != 0) {
        cut[ncut][0] = ot->th_start;
        cut[ncut][1] = ot->th_end;
        ncut++;
    }

    if (ot->rv_end != 0) {
        cut[ncut][0] = ot->rv_start;
        cut[ncut][1] = ot->rv_end;
        ncut++;
    }

    if (ncut == 2 && cut[1][0] < cut[0][0]) {
        a = cut[0][0];
        b = cut[0][1];
        cut[0][0] = cut[1][0];
        cut[0][1] = cut[1][1];
        cut[1][0] = a;
        cut[1][1] = b;
    }

    s = ot->value;
    prev = 0;
    nseg = 0;

    for (i = 0; i <= ncut; i++) {
        a = prev;
        b = i < ncut ? cut[i][0] : ot->len;
        prev = i < ncut ? cut[i][1] : 0;

        if (a < b && s[a] == ';') {
            a++;
        }

        if (a < b && s[b - 1] == ';') {
            b--;
        }

        if (a < b) {
            seg[nseg][0] = a;
            seg[nseg][1] = b;
            nseg++;
        }
    }

    th_len = 0;
    need = 0;

    if (ot->flags & VQ_OT_TH) {
        th_len = vq_sample_th_format(ot->th, th);
        need = 3 + th_len;
    }

    if (ot->flags & VQ_OT_RV) {
        need += (need ? 1 : 0) + 3 + VQ_SAMPLE_HEX_MAX;
    }

    for (i = 0; i < nseg; i++) {
        need += (need ? 1 : 0) + (seg[i][1] - seg[i][0]);
    }

    /* tracestate-handling "Setting values": past 256, abort */
    if (need > VQ_OT_VALUE_MAX || need > out_size) {
        return VQ_EFULL;
    }

    w = out;

    if (ot->flags & VQ_OT_TH) {
        memcpy(w, "th:", 3);
        memcpy(w + 3, th, th_len);
        w += 3 + th_len;
    }

    if (ot->flags & VQ_OT_RV) {
        if (w != out) {
            *w++ = ';';
        }
        memcpy(w, "rv:", 3);
        vq_sample_rv_format(ot->rv, w + 3);
        w += 3 + VQ_SAMPLE_HEX_MAX;
    }

    for (i = 0; i < nseg; i++) {
        if (w != out) {
            *w++ = ';';
        }
        memcpy(w, s + seg[i][0], seg[i][1] - seg[i][0]);
        w += seg[i][1] - seg[i][0];
    }

    /* at most 256 */
    return (int) need;
}

/* ---- the head decision ---------------------------------------------- */

int
vq_sample_head(uint64_t threshold, unsigned flags,
    const uint8_t trace_id[VQ_TRACE_ID_SIZE], uint64_t key_r, vq_ot_t *ot)
{
    uint64_t  r;
    int       sampled, result;

    /*
     * W3C Trace Context: no valid traceparent, no tracestate.  This is the
     * Root case of probability-sampling "Sampling base cases".
     */
    if (!(flags & VQ_SAMPLE_CONTINUED)) {
        memset(ot, 0, sizeof(vq_ot_t));
    }

    /* sdk "Presumption of TraceID randomness": unless rv is present */
    r = (ot->flags & VQ_OT_RV) ? ot->rv : vq_sample_trace_randomness(trace_id);

    if ((flags & VQ_SAMPLE_CONTINUED) && (flags & VQ_SAMPLE_FOLLOW_PARENT)) {
        sampled = (flags & VQ_SAMPLE_PARENT_SAMPLED) != 0;

        /*
         * probability-sampling "Parent-based threshold": an apparently
         * inconsistent sampled threshold is erased, an absent one stays
         * absent; not sampled, there is no probability to convey.
         */
        if (!sampled || (ot->flags & VQ_OT_TH) == 0 || r < ot->th) {
            ot->flags &= ~VQ_OT_TH;
        }

        return sampled ? VQ_SAMPLE_SAMPLED : 0;
    }

    result = 0;

    if (flags & VQ_SAMPLE_KEY) {
        r = key_r & VQ_SAMPLE_R_MAX;

        if (flags & VQ_SAMPLE_CONTINUED) {
            /*
             * sdk "Do not overwrite explicit randomness"; probability-
             * sampling: only the Root may set rv.  A decision on the key
             * then has no probability in terms of the trace's R:
             * "must erase the OpenTelemetry threshold".
             */
            ot->flags &= ~VQ_OT_TH;

            return vq_sample_decide(r, threshold) ? VQ_SAMPLE_SAMPLED : 0;
        }

        /* sdk "Root samplers set explicit randomness" */
        ot->rv = r;
        ot->flags |= VQ_OT_RV;

    } else if ((flags & VQ_SAMPLE_CONTINUED)
               && !(ot->flags & VQ_OT_RV)
               && !(flags & VQ_SAMPLE_PARENT_RANDOM))
    {
        /* sdk "TraceIdRatioBased sampler compatibility warning" */
        result = VQ_SAMPLE_UNCONFIRMED;
    }

    /*
     * sdk "TraceIdRatioBased sampler algorithm": when R >= T, th:T.  Not
     * sampled, no threshold (as the consistent samplers of the OTel SDKs
     * erase it): a span that was not sampled has no adjusted count.
     */
    sampled = vq_sample_decide(r, threshold);

    if (sampled) {
        ot->th = threshold;
        ot->flags |= VQ_OT_TH;

    } else {
        ot->flags &= ~VQ_OT_TH;
    }

    return result | (sampled ? VQ_SAMPLE_SAMPLED : 0);
}
