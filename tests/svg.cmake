# svg.render: the report's SVG charts render with a real renderer at the declared size.
add_executable(test_svg_write_chart svg/write_chart.c)
target_link_libraries(test_svg_write_chart PRIVATE qr_io)
add_test(NAME svg.render COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/svg/svg_render.sh $<TARGET_FILE:test_svg_write_chart>)
set_tests_properties(svg.render PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)

# svg.report_plots: the report's rank.svg (an RTN baseline does not widen the rank axis) and
# layers.svg (one shared y range with 1-2-5 ticks), rendered to PNG and their axes checked.
add_executable(test_svg_report_plots svg/report_plots.c)
target_link_libraries(test_svg_report_plots PRIVATE qr_io)
add_test(NAME svg.report_plots COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/svg/report_plots.sh $<TARGET_FILE:test_svg_report_plots>)
set_tests_properties(svg.report_plots PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
