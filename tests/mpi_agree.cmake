if(EXISTS ${PROJECT_SOURCE_DIR}/io/safetensors.c)
# mpi.agree: only rank 1 meets bad input; every rank exits 2 with the same message, without hanging.
add_executable(test_mpi_agree mpi_agree/agree.c)
target_link_libraries(test_mpi_agree PRIVATE qr_io qr_mpi)
foreach(np 2 3)
  add_test(NAME mpi.agree.np${np}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi_agree/run_agree.sh ${np} $<TARGET_FILE:test_mpi_agree>)
  set_tests_properties(mpi.agree.np${np} PROPERTIES TIMEOUT 180
    ENVIRONMENT "MPIEXEC=${MPIEXEC_EXECUTABLE};${QR_MPIEXEC_ENV}")
endforeach()
endif()

# mpi.agree.precedence.np3: errors win over a stop, a stop over success, the lowest rank's message.
qr_add_mpi_test(NAME mpi.agree.precedence.np3 NP 3 SOURCES mpi_agree/precedence.c)
