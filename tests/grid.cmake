# grid: BLACS grids and the distributed linear algebra (mpi/blacs.c, mpi/pdla.c) against LAPACK.
# One program, one case per test: each case runs every grid shape whose size divides the job size
# (3 and 4 ranks are oversubscribed on small machines). The program is built once and run under
# mpiexec like qr_add_mpi_test does (that helper builds one executable per test name). Waiting ranks
# yield the CPU: on a loaded machine busy-polling ranks starve the rank doing the work (3-10x).
add_executable(test_grid grid/grid_test.c)
target_link_libraries(test_grid PRIVATE qr_test_util qr_mpi)
foreach(case scatter cholesky rsvd pdgesvd gram)
  foreach(np 1 2 3 4)
    add_test(NAME grid.${case}.np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                     $<TARGET_FILE:test_grid> ${MPIEXEC_POSTFLAGS} ${case})
    set_tests_properties(grid.${case}.np${np} PROPERTIES TIMEOUT ${QR_TEST_TIMEOUT}
      ENVIRONMENT "${QR_MPIEXEC_ENV};OMPI_MCA_mpi_yield_when_idle=1")
  endforeach()
endforeach()
