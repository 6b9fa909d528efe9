/* What `duplex bench` shows: the live progress line on a terminal, and at
 * the end the result as a table or as one JSON object. */
#ifndef DUPLEX_CLI_BENCH_REPORT_H
#define DUPLEX_CLI_BENCH_REPORT_H

#include <stdio.h>

#include "bench.h"

/* A bench_config.progress callback; ud is the FILE (a terminal). Rewrites
 * one line in place ("\r", then clear to its end). */
void bench_report_progress(const bench_progress *p, void *ud);
/* Erases the progress line, so what follows starts on a clean one. */
void bench_report_progress_end(FILE *out);

void bench_report_table(FILE *out, const char *url, const bench_config *cfg,
                        const bench_result *r);
void bench_report_json(FILE *out, const char *url, const bench_config *cfg,
                       const bench_result *r);

#endif
