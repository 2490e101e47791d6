# ckpt: part files, the shared parallel-HDF5 checkpoint, the job lock.
set(QR_CKPT_FIXTURE ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/fixture.c)

qr_add_test(NAME ckpt.part_roundtrip
            SOURCES ckpt/part_roundtrip.c ${QR_CKPT_FIXTURE} LIBS qr_io)
