# Writes duplex.pc at install time, not at configure time, so that its
# prefix is the one installed to (`cmake --install build --prefix P` as
# well as CMAKE_INSTALL_PREFIX), and its paths are plain ${prefix}-based
# ones that pkg-config prints as they are (-I/usr/local/include).
# Set by the top-level CMakeLists.txt through install(CODE): DX_PC_IN,
# DX_PC_OUT, DX_PC_VERSION, DX_PC_LIBDIR, DX_PC_INCLUDEDIR.
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${DX_PC_${kind}}")
    set(DX_PC_${kind}_PATH "${DX_PC_${kind}}")
  else()
    set(DX_PC_${kind}_PATH "\${prefix}/${DX_PC_${kind}}")
  endif()
endforeach()
configure_file("${DX_PC_IN}" "${DX_PC_OUT}" @ONLY)
