package main

import "unsafe"

func unsafePointer(p *byte) unsafe.Pointer { return unsafe.Pointer(p) }

func unsafePointer32(p *int32) unsafe.Pointer { return unsafe.Pointer(p) }
