/*
 * The result table, as aligned text for people, or CSV or JSON for
 * scripts. Throughput is the median over the timed repetitions; the
 * spread shown next to it is half the range (max - min) as a percentage
 * of the median, so a noisy machine shows.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double median_of(const double *values, size_t n)
{
    if (n == 0)
        return 0.0;
    double *copy = malloc(n * sizeof *copy);
    if (copy == NULL)
        return values[0];
    memcpy(copy, values, n * sizeof *copy);
    qsort(copy, n, sizeof *copy, cmp_double);
    double m = n % 2 ? copy[n / 2] : (copy[n / 2 - 1] + copy[n / 2]) / 2.0;
    free(copy);
    return m;
}

const char *format_bytes(char *buf, size_t size, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, size, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, units[u]);
    return buf;
}

/* Throughput figures of one allocator over the repetitions. */
typedef struct rate {
    double median;  /* ops per second */
    double spread;  /* half the range, as a fraction of the median */
    double min, max;
} rate;

static rate rate_of(const trace *t, const double *seconds, size_t reps)
{
    rate r = {0, 0, 0, 0};
    if (reps == 0 || t->num_ops == 0)
        return r;
    double *ops_per_s = malloc(reps * sizeof *ops_per_s);
    if (ops_per_s == NULL)
        return r;
    r.min = INFINITY;
    r.max = 0;
    for (size_t i = 0; i < reps; i++) {
        ops_per_s[i] = seconds[i] > 0 ? (double)t->num_ops / seconds[i] : 0.0;
        if (ops_per_s[i] < r.min)
            r.min = ops_per_s[i];
        if (ops_per_s[i] > r.max)
            r.max = ops_per_s[i];
    }
    r.median = median_of(ops_per_s, reps);
    r.spread = r.median > 0 ? (r.max - r.min) / 2.0 / r.median : 0.0;
    free(ops_per_s);
    return r;
}

static const char *format_rate(char *buf, size_t size, double ops_per_s)
{
    if (ops_per_s >= 1e9)
        snprintf(buf, size, "%.2fG", ops_per_s / 1e9);
    else if (ops_per_s >= 1e6)
        snprintf(buf, size, "%.1fM", ops_per_s / 1e6);
    else if (ops_per_s >= 1e3)
        snprintf(buf, size, "%.1fk", ops_per_s / 1e3);
    else
        snprintf(buf, size, "%.0f", ops_per_s);
    return buf;
}

static double utilization_of(const trace_report *r)
{
    return r->result.high_water > 0
               ? (double)r->result.peak_live_payload / (double)r->result.high_water
               : 0.0;
}

void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        /* '<' escaped too, so no "</script" in a name ends the page's data
         * block early (html.c writes its JSON with this). */
        if (c == '"' || c == '\\' || c == '<' || c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

void report_write(FILE *out, report_format format, const trace_report *reports, size_t count,
                  size_t capacity)
{
    double util_sum = 0, log_ratio_sum = 0, footprint_util_sum = 0;
    size_t util_n = 0, ratio_n = 0, footprint_n = 0;
    char a[32], b[32], c[32], d[32];

    if (format == REPORT_TABLE) {
        fprintf(out, "%-22s %9s %11s %11s %7s %15s %15s %8s\n", "trace", "ops", "peak live",
                "high water", "util", "brisk ops/s", "system ops/s", "ratio");
    } else if (format == REPORT_CSV) {
        fprintf(out, "trace,ops,peak_live_bytes,high_water_bytes,utilization,"
                     "brisk_ops_per_s,brisk_spread,system_ops_per_s,system_spread,ratio,"
                     "reps,status\n");
    } else {
        fprintf(out, "{\n  \"capacity\": %zu,\n  \"traces\": [", capacity);
    }

    for (size_t i = 0; i < count; i++) {
        const trace_report *r = &reports[i];
        const trace *t = r->t;
        rate rb = r->ok ? rate_of(t, r->brisk_seconds, r->reps) : (rate){0, 0, 0, 0};
        rate rs = r->ok ? rate_of(t, r->system_seconds, r->reps) : (rate){0, 0, 0, 0};
        double util = utilization_of(r);
        double ratio = rs.median > 0 ? rb.median / rs.median : 0.0;
        double footprint_util = r->ok && r->result.footprint > 0
                                    ? (double)r->result.peak_live_payload / (double)r->result.footprint
                                    : 0.0;
        if (footprint_util > 0) {
            footprint_util_sum += footprint_util;
            footprint_n++;
        }
        if (r->ok) {
            util_sum += util;
            util_n++;
            if (ratio > 0) {
                log_ratio_sum += log(ratio);
                ratio_n++;
            }
        }
        if (format == REPORT_TABLE) {
            if (!r->ok) {
                fprintf(out, "%-22s %9zu  FAILED: %s\n", t->name, t->num_ops, r->error);
                continue;
            }
            char rbs[48] = "not timed ", rss[48] = "not timed ";
            if (r->reps > 0) {
                snprintf(rbs, sizeof rbs, "%s ±%.0f%%", format_rate(a, sizeof a, rb.median),
                         rb.spread * 100);
                snprintf(rss, sizeof rss, "%s ±%.0f%%", format_rate(b, sizeof b, rs.median),
                         rs.spread * 100);
            }
            char ratio_text[32] = "-";
            if (ratio > 0)
                snprintf(ratio_text, sizeof ratio_text, "%.2f", ratio);
            fprintf(out, "%-22s %9zu %11s %11s %6.1f%% %16s %16s %8s\n", t->name,
                    t->num_ops, format_bytes(c, sizeof c, r->result.peak_live_payload),
                    format_bytes(d, sizeof d, r->result.high_water), util * 100, rbs, rss,
                    ratio_text);
        } else if (format == REPORT_CSV) {
            fprintf(out, "%s,%zu,%llu,%llu,%.4f,%.0f,%.4f,%.0f,%.4f,%.4f,%zu,%s\n", t->name,
                    t->num_ops, (unsigned long long)r->result.peak_live_payload,
                    (unsigned long long)r->result.high_water, util, rb.median, rb.spread,
                    rs.median, rs.spread, ratio, r->reps, r->ok ? "ok" : "failed");
        } else {
            fprintf(out, "%s\n    {\"trace\": ", i ? "," : "");
            json_string(out, t->name);
            fprintf(out, ", \"path\": ");
            json_string(out, t->path);
            fprintf(out, ", \"ops\": %zu, \"ok\": %s", t->num_ops, r->ok ? "true" : "false");
            if (!r->ok) {
                fprintf(out, ", \"error\": ");
                json_string(out, r->error);
                fprintf(out, "}");
                continue;
            }
            fprintf(out,
                    ", \"peak_live_bytes\": %llu, \"high_water_bytes\": %llu, "
                    "\"utilization\": %.6f, \"footprint_bytes\": %llu, "
                    "\"checks_run\": %zu,\n     \"brisk\": "
                    "{\"ops_per_s_median\": %.0f, \"spread\": %.4f, \"seconds\": [",
                    (unsigned long long)r->result.peak_live_payload,
                    (unsigned long long)r->result.high_water, util,
                    (unsigned long long)r->result.footprint, r->result.checks_run, rb.median,
                    rb.spread);
            for (size_t k = 0; k < r->reps; k++)
                fprintf(out, "%s%.9f", k ? ", " : "", r->brisk_seconds[k]);
            fprintf(out, "]},\n     \"system\": {\"ops_per_s_median\": %.0f, \"spread\": "
                         "%.4f, \"seconds\": [",
                    rs.median, rs.spread);
            for (size_t k = 0; k < r->reps; k++)
                fprintf(out, "%s%.9f", k ? ", " : "", r->system_seconds[k]);
            fprintf(out, "]}, \"ratio\": %.4f}", ratio);
        }
    }

    double mean_util = util_n ? util_sum / (double)util_n : 0.0;
    double geo_ratio = ratio_n ? exp(log_ratio_sum / (double)ratio_n) : 0.0;
    if (format == REPORT_TABLE) {
        char label[48];
        snprintf(label, sizeof label, "summary (%zu of %zu)", util_n, count);
        char ratio_text[32] = "-";
        if (ratio_n > 0)
            snprintf(ratio_text, sizeof ratio_text, "%.2f", geo_ratio);
        fprintf(out, "%-22s %9s %11s %11s %6.1f%% %16s %16s %8s\n", label, "", "", "",
                mean_util * 100, "", "", ratio_text);
        fprintf(out, "util = peak live payload / brisk high water (mean over traces); ratio = "
                     "brisk / system median ops/s (geometric mean over traces); ±: half the "
                     "range over %zu timed runs\n",
                count ? reports[0].reps : 0);
        if (footprint_n > 0)
            fprintf(out, "counting the heap's own bookkeeping too (a heap grown on demand to that "
                         "high water, brisk_heap_region_size): mean util %.1f%% over %zu traces\n",
                    footprint_util_sum / (double)footprint_n * 100, footprint_n);
    } else if (format == REPORT_CSV) {
        fprintf(out, "summary,,,,%.4f,,,,,%.4f,,%zu_of_%zu\n", mean_util, geo_ratio, util_n,
                count);
    } else {
        fprintf(out, "\n  ],\n  \"summary\": {\"traces_ok\": %zu, \"traces\": %zu, "
                     "\"mean_utilization\": %.6f, \"mean_footprint_utilization\": %.6f, "
                     "\"geomean_ratio\": %.4f}\n}\n",
                util_n, count, mean_util,
                footprint_n ? footprint_util_sum / (double)footprint_n : 0.0, geo_ratio);
    }
}
