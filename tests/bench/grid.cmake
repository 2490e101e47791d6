# grid_bench: distributed randomized SVD, Cholesky and PDGESVD on grids 1x1 and 2x1 next to serial
# LAPACK (docs/distributed.md). Built by the bench target only; run through grid_bench.sh.
add_executable(grid_bench EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/grid_bench.c)
target_link_libraries(grid_bench PRIVATE qr_mpi)
add_dependencies(bench grid_bench)
