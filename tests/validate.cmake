# validate: `qrecon validate` and `qrecon eval --ckpt` end to end on real stories260K checkpoints
# (made by capture + quantize in a fixture): rtn, lqer, serq, aser at W4A8 and W4A4 pass; every
# kernel path gives identical integer sums and outputs; a flipped packed byte fails exactly its
# module; mpiexec -n 2 and -n 3 give the table of -n 1; eval through the kernels agrees with the
# float64 reference path; bad input exits 2. Plus a unit test of src/validate.c on seeded layers.
add_executable(qr_test_flip_byte validate/flip_byte.c)
target_link_libraries(qr_test_flip_byte PRIVATE qr_io)

set(QR_VALIDATE_SCRATCH ${CMAKE_CURRENT_BINARY_DIR}/validate-scratch)
qr_add_script_test(NAME validate.setup SCRIPT validate/setup.sh ARGS ${QR_VALIDATE_SCRATCH}
                   TIMEOUT 600)
set_tests_properties(validate.setup PROPERTIES FIXTURES_SETUP validate_ckpts)
foreach(case methods kernels corrupt mpi eval bad_input)
  qr_add_script_test(NAME validate.${case} SCRIPT validate/${case}.sh
                     ARGS ${QR_VALIDATE_SCRATCH} $<TARGET_FILE:qr_test_flip_byte> TIMEOUT 600)
  set_tests_properties(validate.${case} PROPERTIES FIXTURES_REQUIRED validate_ckpts)
endforeach()

qr_add_test(NAME validate.unit SOURCES validate/test_validate.c)
