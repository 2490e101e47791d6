# io_model: the model readers (config.json, llama2.c v0), the unified model view, module enumeration
# and `qrecon inspect`.
qr_add_test(NAME io_model.modules SOURCES io_model/modules.c)
qr_add_test(NAME io_model.config SOURCES io_model/config.c LIBS qr_io)
qr_add_test(NAME io_model.llama2c SOURCES io_model/llama2c.c LIBS qr_io)
qr_add_test(NAME io_model.open SOURCES io_model/open.c LIBS qr_io)
# Real data: the llama2.c checkpoint and the Hugging Face folder of one model hold the same tensors.
qr_add_test(NAME io_model.real_stories SOURCES io_model/real.c LIBS qr_io ARGS stories)
add_test(NAME io_model.real_babyllama COMMAND test_io_model_real_stories babyllama)
set_tests_properties(io_model.real_babyllama PROPERTIES TIMEOUT ${QR_TEST_TIMEOUT}
  ENVIRONMENT "QRECON_TEST_DATA=${QR_TEST_DATA};OPENBLAS_NUM_THREADS=1" SKIP_RETURN_CODE 77)
# `qrecon inspect` end to end: tables and JSON on the real folders, exit 2 on broken files.
add_executable(test_io_model_check_json io_model/check_json.c)
target_link_libraries(test_io_model_check_json PRIVATE PkgConfig::JANSSON)
qr_add_script_test(NAME io_model.inspect SCRIPT io_model/inspect.sh TIMEOUT 180
  ARGS $<TARGET_FILE:test_io_model_check_json>)
foreach(np 2 3)
  qr_add_script_test(NAME io_model.inspect.np${np} SCRIPT io_model/inspect_mpi.sh ARGS ${np} TIMEOUT 180)
endforeach()
