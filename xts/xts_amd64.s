//go:build amd64 && !purego

#include "textflag.h"

// AES-XTS kernels. Tweaks are multiplied by x^k in GF(2^128) (IEEE 1619 byte
// order) in registers: shift each 64-bit half left by k, move the bits that
// leave the low half into the high half (VPSLLDQ $8), and fold the bits that
// leave the high half back in as (bits * 0x87), a carry-less multiply. No
// branches or table lookups depend on keys or data; the only branches are on
// the key size and the lengths.

// D = T * x^(8*n) in every 128-bit lane (n bytes, n <= 7): a byte shift, and
// the n bytes that leave the top folded back in as (bytes * 0x87). P holds
// 0x87 in every 64-bit half; t1, t2 scratch.
#define MULBYTES(n, P, T, D, t1, t2) \
	VPSRLDQ $(16-n), T, t1; \
	VPCLMULQDQ $0x00, P, t1, t2; \
	VPSLLDQ $n, T, D; \
	VPXOR t2, D, D

#define MULBYTESZ(n, T, t1, t2) \
	VPSRLDQ $(16-n), T, t1; \
	VPCLMULQDQ $0x00, Z31, t1, t2; \
	VPSLLDQ $n, T, T; \
	VPXORQ t2, T, T

// 0x87 in both halves, so either half of a carry-less multiply operand finds it.
DATA xtsPoly<>+0(SB)/8, $0x87
DATA xtsPoly<>+8(SB)/8, $0x87
GLOBL xtsPoly<>(SB), RODATA|NOPTR, $16

DATA xtsPoly32<>+0(SB)/8, $0x87
DATA xtsPoly32<>+8(SB)/8, $0x87
DATA xtsPoly32<>+16(SB)/8, $0x87
DATA xtsPoly32<>+24(SB)/8, $0x87
GLOBL xtsPoly32<>(SB), RODATA|NOPTR, $32

// Per-lane shift counts to turn a tweak broadcast into (T, Tx, Tx^2, Tx^3).
DATA xtsShl<>+0(SB)/8, $0
DATA xtsShl<>+8(SB)/8, $0
DATA xtsShl<>+16(SB)/8, $1
DATA xtsShl<>+24(SB)/8, $1
DATA xtsShl<>+32(SB)/8, $2
DATA xtsShl<>+40(SB)/8, $2
DATA xtsShl<>+48(SB)/8, $3
DATA xtsShl<>+56(SB)/8, $3
GLOBL xtsShl<>(SB), RODATA|NOPTR, $64

DATA xtsShr<>+0(SB)/8, $64
DATA xtsShr<>+8(SB)/8, $64
DATA xtsShr<>+16(SB)/8, $63
DATA xtsShr<>+24(SB)/8, $63
DATA xtsShr<>+32(SB)/8, $62
DATA xtsShr<>+40(SB)/8, $62
DATA xtsShr<>+48(SB)/8, $61
DATA xtsShr<>+56(SB)/8, $61
GLOBL xtsShr<>(SB), RODATA|NOPTR, $64

// ---------------------------------------------------------------------------
// encrypt8(rk *byte, rounds int, buf *byte): AES-encrypt 8 blocks in place.

#define ENC8R(k) \
	VAESENC k, X0, X0; VAESENC k, X1, X1; VAESENC k, X2, X2; VAESENC k, X3, X3; \
	VAESENC k, X4, X4; VAESENC k, X5, X5; VAESENC k, X6, X6; VAESENC k, X7, X7


// ---------------------------------------------------------------------------
// VAES on zmm: Z0-Z7 data (32 blocks), Z8-Z15 their tweaks, Z16-Z30 the round
// keys broadcast to all four lanes, Z31 the reduction constant.

// T *= x^k for every 128-bit lane of T (k <= 57); t1, t2 are scratch.
#define MULZ(k, T, D, t1, t2) \
	VPSRLQ $(64-k), T, t1; \
	VPCLMULQDQ $0x11, Z31, t1, t2; \
	VPSLLDQ $8, t1, t1; \
	VPSLLQ $k, T, D; \
	VPTERNLOGQ $0x96, t1, t2, D

#define ROUNDZ(op, k) \
	op k, Z0, Z0; op k, Z1, Z1; op k, Z2, Z2; op k, Z3, Z3; \
	op k, Z4, Z4; op k, Z5, Z5; op k, Z6, Z6; op k, Z7, Z7

#define XTS_VAES(OP, OPLAST) \
	MOVQ rk+0(FP), AX; \
	MOVQ rounds+8(FP), CX; \
	MOVQ dst+16(FP), DI; \
	MOVQ src+24(FP), SI; \
	MOVQ blocks+32(FP), DX; \
	MOVQ nsect+40(FP), BX; \
	MOVQ tweaks+48(FP), R8; \
	VBROADCASTI32X4 0(AX), Z16; \
	VBROADCASTI32X4 16(AX), Z17; \
	VBROADCASTI32X4 32(AX), Z18; \
	VBROADCASTI32X4 48(AX), Z19; \
	VBROADCASTI32X4 64(AX), Z20; \
	VBROADCASTI32X4 80(AX), Z21; \
	VBROADCASTI32X4 96(AX), Z22; \
	VBROADCASTI32X4 112(AX), Z23; \
	VBROADCASTI32X4 128(AX), Z24; \
	VBROADCASTI32X4 144(AX), Z25; \
	VBROADCASTI32X4 160(AX), Z26; \
	VBROADCASTI32X4 176(AX), Z27; \
	VBROADCASTI32X4 192(AX), Z28; \
	VBROADCASTI32X4 208(AX), Z29; \
	VBROADCASTI32X4 224(AX), Z30; \
	VBROADCASTI32X4 xtsPoly<>(SB), Z31; \
sector: \
	VBROADCASTI32X4 0(R8), Z8; \
	VMOVDQU64 xtsShl<>(SB), Z0; \
	VMOVDQU64 xtsShr<>(SB), Z1; \
	VPSRLVQ Z1, Z8, Z2; \
	VPCLMULQDQ $0x11, Z31, Z2, Z3; \
	VPSLLDQ $8, Z2, Z2; \
	VPSLLVQ Z0, Z8, Z8; \
	VPTERNLOGQ $0x96, Z2, Z3, Z8; \
	MULZ(4, Z8, Z9, Z0, Z1); \
	MULZ(8, Z8, Z10, Z2, Z3); \
	MULZ(12, Z8, Z11, Z4, Z5); \
	MULZ(16, Z8, Z12, Z6, Z7); \
	MULZ(20, Z8, Z13, Z0, Z1); \
	MULZ(24, Z8, Z14, Z2, Z3); \
	MULZ(28, Z8, Z15, Z4, Z5); \
	MOVQ DX, R9; \
loop32: \
	CMPQ R9, $32; \
	JB tail; \
	VMOVDQU64 0(SI), Z0; \
	VMOVDQU64 64(SI), Z1; \
	VMOVDQU64 128(SI), Z2; \
	VMOVDQU64 192(SI), Z3; \
	VMOVDQU64 256(SI), Z4; \
	VMOVDQU64 320(SI), Z5; \
	VMOVDQU64 384(SI), Z6; \
	VMOVDQU64 448(SI), Z7; \
	VPTERNLOGQ $0x96, Z16, Z8, Z0; \
	VPTERNLOGQ $0x96, Z16, Z9, Z1; \
	VPTERNLOGQ $0x96, Z16, Z10, Z2; \
	VPTERNLOGQ $0x96, Z16, Z11, Z3; \
	VPTERNLOGQ $0x96, Z16, Z12, Z4; \
	VPTERNLOGQ $0x96, Z16, Z13, Z5; \
	VPTERNLOGQ $0x96, Z16, Z14, Z6; \
	VPTERNLOGQ $0x96, Z16, Z15, Z7; \
	ROUNDZ(OP, Z17); \
	ROUNDZ(OP, Z18); \
	ROUNDZ(OP, Z19); \
	ROUNDZ(OP, Z20); \
	ROUNDZ(OP, Z21); \
	ROUNDZ(OP, Z22); \
	ROUNDZ(OP, Z23); \
	ROUNDZ(OP, Z24); \
	ROUNDZ(OP, Z25); \
	CMPQ CX, $10; \
	JEQ last128; \
	ROUNDZ(OP, Z26); \
	ROUNDZ(OP, Z27); \
	ROUNDZ(OP, Z28); \
	ROUNDZ(OP, Z29); \
	ROUNDZ(OPLAST, Z30); \
	JMP done32; \
last128: \
	ROUNDZ(OPLAST, Z26); \
done32: \
	VPXORQ Z8, Z0, Z0; \
	VPXORQ Z9, Z1, Z1; \
	VPXORQ Z10, Z2, Z2; \
	VPXORQ Z11, Z3, Z3; \
	VPXORQ Z12, Z4, Z4; \
	VPXORQ Z13, Z5, Z5; \
	VPXORQ Z14, Z6, Z6; \
	VPXORQ Z15, Z7, Z7; \
	VMOVDQU64 Z0, 0(DI); \
	VMOVDQU64 Z1, 64(DI); \
	VMOVDQU64 Z2, 128(DI); \
	VMOVDQU64 Z3, 192(DI); \
	VMOVDQU64 Z4, 256(DI); \
	VMOVDQU64 Z5, 320(DI); \
	VMOVDQU64 Z6, 384(DI); \
	VMOVDQU64 Z7, 448(DI); \
	ADDQ $512, SI; \
	ADDQ $512, DI; \
	SUBQ $32, R9; \
	JZ nextsector; \
	MULBYTESZ(4, Z8, Z0, Z1); \
	MULBYTESZ(4, Z9, Z2, Z3); \
	MULBYTESZ(4, Z10, Z4, Z5); \
	MULBYTESZ(4, Z11, Z6, Z7); \
	MULBYTESZ(4, Z12, Z0, Z1); \
	MULBYTESZ(4, Z13, Z2, Z3); \
	MULBYTESZ(4, Z14, Z4, Z5); \
	MULBYTESZ(4, Z15, Z6, Z7); \
	JMP loop32; \
tail: \
	TESTQ R9, R9; \
	JZ nextsector; \
tail1: \
	VMOVDQU 0(SI), X0; \
	VPTERNLOGQ $0x96, X16, X8, X0; \
	OP X17, X0, X0; \
	OP X18, X0, X0; \
	OP X19, X0, X0; \
	OP X20, X0, X0; \
	OP X21, X0, X0; \
	OP X22, X0, X0; \
	OP X23, X0, X0; \
	OP X24, X0, X0; \
	OP X25, X0, X0; \
	CMPQ CX, $10; \
	JEQ tlast128; \
	OP X26, X0, X0; \
	OP X27, X0, X0; \
	OP X28, X0, X0; \
	OP X29, X0, X0; \
	OPLAST X30, X0, X0; \
	JMP tdone; \
tlast128: \
	OPLAST X26, X0, X0; \
tdone: \
	VPXORQ X8, X0, X0; \
	VMOVDQU X0, 0(DI); \
	VPSRLQ $63, X8, X1; \
	VPCLMULQDQ $0x11, X31, X1, X2; \
	VPSLLDQ $8, X1, X1; \
	VPSLLQ $1, X8, X8; \
	VPTERNLOGQ $0x96, X1, X2, X8; \
	ADDQ $16, SI; \
	ADDQ $16, DI; \
	DECQ R9; \
	JNZ tail1; \
nextsector: \
	ADDQ $16, R8; \
	DECQ BX; \
	JNZ sector; \
	VZEROUPPER; \
	RET

// ---------------------------------------------------------------------------
// AES-NI on xmm (VEX encoded): X0-X7 data (8 blocks), X8-X15 their tweaks,
// round keys read from memory (VEX allows unaligned operands).

// D = T * x^k (k <= 57); t1, t2 scratch.
#define MULX(k, T, D, t1, t2) \
	VPSRLQ $(64-k), T, t1; \
	VPCLMULQDQ $0x11, xtsPoly<>(SB), t1, t2; \
	VPSLLDQ $8, t1, t1; \
	VPSLLQ $k, T, D; \
	VPXOR t1, D, D; \
	VPXOR t2, D, D

#define ROUNDX(op, off) \
	op off(AX), X0, X0; op off(AX), X1, X1; op off(AX), X2, X2; op off(AX), X3, X3; \
	op off(AX), X4, X4; op off(AX), X5, X5; op off(AX), X6, X6; op off(AX), X7, X7

#define XORX(off) \
	VPXOR off(AX), X0, X0; VPXOR off(AX), X1, X1; VPXOR off(AX), X2, X2; VPXOR off(AX), X3, X3; \
	VPXOR off(AX), X4, X4; VPXOR off(AX), X5, X5; VPXOR off(AX), X6, X6; VPXOR off(AX), X7, X7

#define XTS_AESNI(OP, OPLAST) \
	MOVQ rk+0(FP), AX; \
	MOVQ rounds+8(FP), CX; \
	MOVQ dst+16(FP), DI; \
	MOVQ src+24(FP), SI; \
	MOVQ blocks+32(FP), DX; \
	MOVQ nsect+40(FP), BX; \
	MOVQ tweaks+48(FP), R8; \
sector: \
	VMOVDQU 0(R8), X8; \
	MULX(1, X8, X9, X0, X1); \
	MULX(2, X8, X10, X2, X3); \
	MULX(3, X8, X11, X4, X5); \
	MULX(4, X8, X12, X6, X7); \
	MULX(5, X8, X13, X0, X1); \
	MULX(6, X8, X14, X2, X3); \
	MULX(7, X8, X15, X4, X5); \
	MOVQ DX, R9; \
loop8: \
	CMPQ R9, $8; \
	JB tail; \
	VPXOR 0(SI), X8, X0; \
	VPXOR 16(SI), X9, X1; \
	VPXOR 32(SI), X10, X2; \
	VPXOR 48(SI), X11, X3; \
	VPXOR 64(SI), X12, X4; \
	VPXOR 80(SI), X13, X5; \
	VPXOR 96(SI), X14, X6; \
	VPXOR 112(SI), X15, X7; \
	XORX(0); \
	ROUNDX(OP, 16); \
	ROUNDX(OP, 32); \
	ROUNDX(OP, 48); \
	ROUNDX(OP, 64); \
	ROUNDX(OP, 80); \
	ROUNDX(OP, 96); \
	ROUNDX(OP, 112); \
	ROUNDX(OP, 128); \
	ROUNDX(OP, 144); \
	CMPQ CX, $10; \
	JEQ last128; \
	ROUNDX(OP, 160); \
	ROUNDX(OP, 176); \
	ROUNDX(OP, 192); \
	ROUNDX(OP, 208); \
	ROUNDX(OPLAST, 224); \
	JMP done8; \
last128: \
	ROUNDX(OPLAST, 160); \
done8: \
	VPXOR X8, X0, X0; \
	VPXOR X9, X1, X1; \
	VPXOR X10, X2, X2; \
	VPXOR X11, X3, X3; \
	VPXOR X12, X4, X4; \
	VPXOR X13, X5, X5; \
	VPXOR X14, X6, X6; \
	VPXOR X15, X7, X7; \
	VMOVDQU X0, 0(DI); \
	VMOVDQU X1, 16(DI); \
	VMOVDQU X2, 32(DI); \
	VMOVDQU X3, 48(DI); \
	VMOVDQU X4, 64(DI); \
	VMOVDQU X5, 80(DI); \
	VMOVDQU X6, 96(DI); \
	VMOVDQU X7, 112(DI); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	SUBQ $8, R9; \
	JZ nextsector; \
	MULBYTES(1, xtsPoly<>(SB), X8, X8, X0, X1); \
	MULBYTES(1, xtsPoly<>(SB), X9, X9, X2, X3); \
	MULBYTES(1, xtsPoly<>(SB), X10, X10, X4, X5); \
	MULBYTES(1, xtsPoly<>(SB), X11, X11, X6, X7); \
	MULBYTES(1, xtsPoly<>(SB), X12, X12, X0, X1); \
	MULBYTES(1, xtsPoly<>(SB), X13, X13, X2, X3); \
	MULBYTES(1, xtsPoly<>(SB), X14, X14, X4, X5); \
	MULBYTES(1, xtsPoly<>(SB), X15, X15, X6, X7); \
	JMP loop8; \
tail: \
	TESTQ R9, R9; \
	JZ nextsector; \
tail1: \
	VMOVDQU 0(SI), X0; \
	VPXOR X8, X0, X0; \
	VPXOR 0(AX), X0, X0; \
	OP 16(AX), X0, X0; \
	OP 32(AX), X0, X0; \
	OP 48(AX), X0, X0; \
	OP 64(AX), X0, X0; \
	OP 80(AX), X0, X0; \
	OP 96(AX), X0, X0; \
	OP 112(AX), X0, X0; \
	OP 128(AX), X0, X0; \
	OP 144(AX), X0, X0; \
	CMPQ CX, $10; \
	JEQ tlast128; \
	OP 160(AX), X0, X0; \
	OP 176(AX), X0, X0; \
	OP 192(AX), X0, X0; \
	OP 208(AX), X0, X0; \
	OPLAST 224(AX), X0, X0; \
	JMP tdone; \
tlast128: \
	OPLAST 160(AX), X0, X0; \
tdone: \
	VPXOR X8, X0, X0; \
	VMOVDQU X0, 0(DI); \
	MULX(1, X8, X8, X1, X2); \
	ADDQ $16, SI; \
	ADDQ $16, DI; \
	DECQ R9; \
	JNZ tail1; \
nextsector: \
	ADDQ $16, R8; \
	DECQ BX; \
	JNZ sector; \
	VZEROUPPER; \
	RET

// ---------------------------------------------------------------------------
// VAES on ymm (VEX, AVX2; for CPUs with VAES but without AVX-512, such as
// AMD Zen 3): Y0-Y7 data (16 blocks), Y8-Y15 their tweaks, round keys read
// from memory from a schedule with every round key stored twice (32 bytes).

// D = T * x^k in both lanes (k <= 57); t1, t2 scratch.
#define MULY(k, T, D, t1, t2) \
	VPSRLQ $(64-k), T, t1; \
	VPCLMULQDQ $0x11, xtsPoly32<>(SB), t1, t2; \
	VPSLLDQ $8, t1, t1; \
	VPSLLQ $k, T, D; \
	VPXOR t1, D, D; \
	VPXOR t2, D, D

#define ROUNDY(op, off) \
	op off(AX), Y0, Y0; op off(AX), Y1, Y1; op off(AX), Y2, Y2; op off(AX), Y3, Y3; \
	op off(AX), Y4, Y4; op off(AX), Y5, Y5; op off(AX), Y6, Y6; op off(AX), Y7, Y7

#define XTS_VAES256(OP, OPLAST) \
	MOVQ rk+0(FP), AX; \
	MOVQ rounds+8(FP), CX; \
	MOVQ dst+16(FP), DI; \
	MOVQ src+24(FP), SI; \
	MOVQ blocks+32(FP), DX; \
	MOVQ nsect+40(FP), BX; \
	MOVQ tweaks+48(FP), R8; \
sector: \
	VMOVDQU 0(R8), X8; \
	MULX(1, X8, X9, X0, X1); \
	VINSERTI128 $1, X9, Y8, Y8; \
	MULY(2, Y8, Y9, Y0, Y1); \
	MULY(4, Y8, Y10, Y2, Y3); \
	MULY(6, Y8, Y11, Y4, Y5); \
	MULY(8, Y8, Y12, Y6, Y7); \
	MULY(10, Y8, Y13, Y0, Y1); \
	MULY(12, Y8, Y14, Y2, Y3); \
	MULY(14, Y8, Y15, Y4, Y5); \
	MOVQ DX, R9; \
loop16: \
	CMPQ R9, $16; \
	JB tail; \
	VMOVDQU 0(SI), Y0; \
	VMOVDQU 32(SI), Y1; \
	VMOVDQU 64(SI), Y2; \
	VMOVDQU 96(SI), Y3; \
	VMOVDQU 128(SI), Y4; \
	VMOVDQU 160(SI), Y5; \
	VMOVDQU 192(SI), Y6; \
	VMOVDQU 224(SI), Y7; \
	VPXOR Y8, Y0, Y0; \
	VPXOR Y9, Y1, Y1; \
	VPXOR Y10, Y2, Y2; \
	VPXOR Y11, Y3, Y3; \
	VPXOR Y12, Y4, Y4; \
	VPXOR Y13, Y5, Y5; \
	VPXOR Y14, Y6, Y6; \
	VPXOR Y15, Y7, Y7; \
	ROUNDY(VPXOR, 0); \
	ROUNDY(OP, 32); \
	ROUNDY(OP, 64); \
	ROUNDY(OP, 96); \
	ROUNDY(OP, 128); \
	ROUNDY(OP, 160); \
	ROUNDY(OP, 192); \
	ROUNDY(OP, 224); \
	ROUNDY(OP, 256); \
	ROUNDY(OP, 288); \
	CMPQ CX, $10; \
	JEQ last128; \
	ROUNDY(OP, 320); \
	ROUNDY(OP, 352); \
	ROUNDY(OP, 384); \
	ROUNDY(OP, 416); \
	ROUNDY(OPLAST, 448); \
	JMP done16; \
last128: \
	ROUNDY(OPLAST, 320); \
done16: \
	VPXOR Y8, Y0, Y0; \
	VPXOR Y9, Y1, Y1; \
	VPXOR Y10, Y2, Y2; \
	VPXOR Y11, Y3, Y3; \
	VPXOR Y12, Y4, Y4; \
	VPXOR Y13, Y5, Y5; \
	VPXOR Y14, Y6, Y6; \
	VPXOR Y15, Y7, Y7; \
	VMOVDQU Y0, 0(DI); \
	VMOVDQU Y1, 32(DI); \
	VMOVDQU Y2, 64(DI); \
	VMOVDQU Y3, 96(DI); \
	VMOVDQU Y4, 128(DI); \
	VMOVDQU Y5, 160(DI); \
	VMOVDQU Y6, 192(DI); \
	VMOVDQU Y7, 224(DI); \
	ADDQ $256, SI; \
	ADDQ $256, DI; \
	SUBQ $16, R9; \
	JZ nextsector; \
	MULBYTES(2, xtsPoly32<>(SB), Y8, Y8, Y0, Y1); \
	MULBYTES(2, xtsPoly32<>(SB), Y9, Y9, Y2, Y3); \
	MULBYTES(2, xtsPoly32<>(SB), Y10, Y10, Y4, Y5); \
	MULBYTES(2, xtsPoly32<>(SB), Y11, Y11, Y6, Y7); \
	MULBYTES(2, xtsPoly32<>(SB), Y12, Y12, Y0, Y1); \
	MULBYTES(2, xtsPoly32<>(SB), Y13, Y13, Y2, Y3); \
	MULBYTES(2, xtsPoly32<>(SB), Y14, Y14, Y4, Y5); \
	MULBYTES(2, xtsPoly32<>(SB), Y15, Y15, Y6, Y7); \
	JMP loop16; \
tail: \
	TESTQ R9, R9; \
	JZ nextsector; \
tail1: \
	VMOVDQU 0(SI), X0; \
	VPXOR X8, X0, X0; \
	VPXOR 0(AX), X0, X0; \
	OP 32(AX), X0, X0; \
	OP 64(AX), X0, X0; \
	OP 96(AX), X0, X0; \
	OP 128(AX), X0, X0; \
	OP 160(AX), X0, X0; \
	OP 192(AX), X0, X0; \
	OP 224(AX), X0, X0; \
	OP 256(AX), X0, X0; \
	OP 288(AX), X0, X0; \
	CMPQ CX, $10; \
	JEQ tlast128; \
	OP 320(AX), X0, X0; \
	OP 352(AX), X0, X0; \
	OP 384(AX), X0, X0; \
	OP 416(AX), X0, X0; \
	OPLAST 448(AX), X0, X0; \
	JMP tdone; \
tlast128: \
	OPLAST 320(AX), X0, X0; \
tdone: \
	VPXOR X8, X0, X0; \
	VMOVDQU X0, 0(DI); \
	MULX(1, X8, X8, X1, X2); \
	ADDQ $16, SI; \
	ADDQ $16, DI; \
	DECQ R9; \
	JNZ tail1; \
nextsector: \
	ADDQ $16, R8; \
	DECQ BX; \
	JNZ sector; \
	VZEROUPPER; \
	RET

// ---------------------------------------------------------------------------
// Functions (after all macros, so that vet maps each line to its function).

TEXT ·encrypt8(SB), NOSPLIT, $0-24
	MOVQ rk+0(FP), AX
	MOVQ rounds+8(FP), CX
	MOVQ buf+16(FP), DI
	VMOVDQU 0(DI), X0
	VMOVDQU 16(DI), X1
	VMOVDQU 32(DI), X2
	VMOVDQU 48(DI), X3
	VMOVDQU 64(DI), X4
	VMOVDQU 80(DI), X5
	VMOVDQU 96(DI), X6
	VMOVDQU 112(DI), X7
	VMOVDQU 0(AX), X8
	VPXOR X8, X0, X0
	VPXOR X8, X1, X1
	VPXOR X8, X2, X2
	VPXOR X8, X3, X3
	VPXOR X8, X4, X4
	VPXOR X8, X5, X5
	VPXOR X8, X6, X6
	VPXOR X8, X7, X7
	MOVQ $1, DX
	MOVQ AX, R8
enc8loop:
	ADDQ $16, R8
	VMOVDQU 0(R8), X8
	ENC8R(X8)
	INCQ DX
	CMPQ DX, CX
	JB enc8loop
	VMOVDQU 16(R8), X8
	VAESENCLAST X8, X0, X0
	VAESENCLAST X8, X1, X1
	VAESENCLAST X8, X2, X2
	VAESENCLAST X8, X3, X3
	VAESENCLAST X8, X4, X4
	VAESENCLAST X8, X5, X5
	VAESENCLAST X8, X6, X6
	VAESENCLAST X8, X7, X7
	VMOVDQU X0, 0(DI)
	VMOVDQU X1, 16(DI)
	VMOVDQU X2, 32(DI)
	VMOVDQU X3, 48(DI)
	VMOVDQU X4, 64(DI)
	VMOVDQU X5, 80(DI)
	VMOVDQU X6, 96(DI)
	VMOVDQU X7, 112(DI)
	VZEROUPPER
	RET

// func xtsEncVAES(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)
TEXT ·xtsEncVAES(SB), NOSPLIT, $0-56
	XTS_VAES(VAESENC, VAESENCLAST)

// func xtsDecVAES(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)
TEXT ·xtsDecVAES(SB), NOSPLIT, $0-56
	XTS_VAES(VAESDEC, VAESDECLAST)

// func xtsEncAESNI(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)
TEXT ·xtsEncAESNI(SB), NOSPLIT, $0-56
	XTS_AESNI(VAESENC, VAESENCLAST)

// func xtsDecAESNI(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)
TEXT ·xtsDecAESNI(SB), NOSPLIT, $0-56
	XTS_AESNI(VAESDEC, VAESDECLAST)

// func xtsEncVAES256(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)
TEXT ·xtsEncVAES256(SB), NOSPLIT, $0-56
	XTS_VAES256(VAESENC, VAESENCLAST)

// func xtsDecVAES256(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)
TEXT ·xtsDecVAES256(SB), NOSPLIT, $0-56
	XTS_VAES256(VAESDEC, VAESDECLAST)

// func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET
