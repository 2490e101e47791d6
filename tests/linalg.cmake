# linalg: dense linear algebra (src/linalg.h) and the activation statistics (src/stats.h).
foreach(case svd truncated randomized cholesky tri eigh qr)
  qr_add_test(NAME linalg.${case} SOURCES linalg/test_linalg.c ARGS ${case})
endforeach()
foreach(case gram merge repeat)
  qr_add_test(NAME linalg.stats_${case} SOURCES linalg/test_stats.c ARGS ${case})
endforeach()
