# svg.render: the report's SVG charts render with a real renderer at the declared size.
add_executable(test_svg_write_chart svg/write_chart.c)
target_link_libraries(test_svg_write_chart PRIVATE qr_io)
add_test(NAME svg.render COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/svg/svg_render.sh $<TARGET_FILE:test_svg_write_chart>)
set_tests_properties(svg.render PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
