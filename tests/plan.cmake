# plan: the cost model and exact linear partition (mpi/plan.c), and `qrecon plan` (jobs/cmd_plan.c).
# One program with a case per test (qr_add_test would build one executable per test name).
add_executable(test_plan plan/plan_test.c)
target_link_libraries(test_plan PRIVATE qr_test_util qr_io qr_mpi)
foreach(case partition properties costs real synthetic capture)
  add_test(NAME plan.${case} COMMAND test_plan ${case})
  set_tests_properties(plan.${case} PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77
    ENVIRONMENT "QRECON_TEST_DATA=${QR_TEST_DATA};OPENBLAS_NUM_THREADS=1")
endforeach()
qr_add_script_test(NAME plan.cli SCRIPT plan/plan_cli.sh TIMEOUT 120)
qr_add_script_test(NAME plan.scale SCRIPT plan/scale.sh TIMEOUT 300)
