/* log.h: the one logger. INFO and DEBUG come from rank 0 only; WARN and ERROR from any rank, tagged
 * "[rank r/n]" when there is more than one rank. The rank is set by mpi/ (src/ knows no MPI). */
#ifndef QR_LOG_H
#define QR_LOG_H

#include <stdio.h>

typedef enum { QR_LOG_ERROR = 0, QR_LOG_WARN, QR_LOG_INFO, QR_LOG_DEBUG } qr_log_level;

/* Set this process's rank and the job size (default 0/1). */
void qr_log_set_rank(int rank, int nranks);
int qr_log_rank(void);
int qr_log_nranks(void);

/* Messages above `level` are dropped (default INFO). */
void qr_log_set_level(qr_log_level level);
qr_log_level qr_log_get_level(void);

/* When `all` is nonzero every rank prints INFO too (for debugging and for tests that check that all
 * ranks agree). Also enabled by the environment variable QRECON_LOG_ALL_RANKS=1. */
void qr_log_set_all_ranks(int all);

void qr_log(qr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define QR_ERROR(...) qr_log(QR_LOG_ERROR, __VA_ARGS__)
#define QR_WARN(...) qr_log(QR_LOG_WARN, __VA_ARGS__)
#define QR_INFO(...) qr_log(QR_LOG_INFO, __VA_ARGS__)
#define QR_DEBUG(...) qr_log(QR_LOG_DEBUG, __VA_ARGS__)

#endif
