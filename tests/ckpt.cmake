# ckpt: part files, the shared parallel-HDF5 checkpoint, the job lock.
set(QR_CKPT_FIXTURE ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/fixture.c)

qr_add_test(NAME ckpt.part_roundtrip
            SOURCES ckpt/part_roundtrip.c ${QR_CKPT_FIXTURE} LIBS qr_io)

foreach(np 2 3)
  qr_add_mpi_test(NAME ckpt.assemble.np${np} NP ${np}
                  SOURCES ckpt/assemble.c ${QR_CKPT_FIXTURE} LIBS qr_io qr_mpi)
endforeach()

# The h5ls -r listing of an assembled checkpoint is the documented layout (docs/checkpoint.md).
qr_add_script_test(NAME ckpt.h5ls_layout SCRIPT ckpt/h5ls_layout.sh
                   ARGS $<TARGET_FILE:test_ckpt_assemble_np2> ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/h5ls_expected.txt)

qr_add_test(NAME ckpt.lock SOURCES ckpt/lock.c ${QR_CKPT_FIXTURE} LIBS qr_io)
