/*
 * ReweightArgmax: bilinear upsampling of C class logits, per-class re-weighting, argmax: in one pass,
 * optionally with each pixel's confidence (the softmax of the compared scores at the winning class).
 *
 * One source, four compilers:
 *  - nvcc, inside the TensorRT plugin (reweightArgmaxKernel.cu launches the kernels);
 *  - NVRTC, on its own: tests on a GPU without TensorRT load the extern "C" kernels below by name.
 *    For NVRTC this file includes no header, so it needs no include path;
 *  - a host C++ compiler, where only the per-pixel arithmetic is visible (the host reference,
 *    reweightArgmaxReference.h, shares it);
 *  - a host C++ compiler with DANNET_CUDA_EMULATION defined (the tests' CPU emulation of CUDA,
 *    plugins/tests/cudaEmulation, first on the include path): the kernels and their launcher compile
 *    as they are and run on the CPU. Only the fp16 conversion (inline PTX) is spelt differently there.
 *
 * Semantics (DESIGN.md section 3): for output pixel (n, y, x), interpolate every class's logit
 * exactly as PyTorch's bilinear upsampling does (align_corners 0/1), score it (mode 0: z * w,
 * mode 1: z + log w, i.e. probabilities times w), and output the lowest class index with the
 * highest score. The confidence kernels also output floor(255 / sum_c exp(s_c - max s) + 0.5) per
 * pixel (plugin README, "Confidence"). Arithmetic in fp32 whatever the input type.
 */
#pragma once

#if defined(DANNET_CUDA_EMULATION)
#include <cuda_runtime.h> // what nvcc includes implicitly; here the CPU emulation's
#endif
#if !defined(__CUDACC_RTC__)
#include <math.h> // expf for host code (NVRTC has the CUDA math functions built in)
#endif

#if defined(__CUDACC__)
#define DANNET_HD __host__ __device__ __forceinline__
#elif defined(DANNET_CUDA_EMULATION)
// The emulated kernel's arithmetic differs from the host reference's (mulRn below) and is linked
// into one program with it, sometimes built from a mutated copy of this file (the mutation test):
// internal linkage keeps the two apart, where the linker would silently keep one of two inline
// definitions of one name. Only the emulated kernel translation unit sees these as static.
#define DANNET_HD static inline
#else
#define DANNET_HD inline
#endif

namespace dannet
{

//! Largest class count the kernel's parameter block holds.
constexpr int kMaxClasses = 64;
//! Output pixels per thread (consecutive in a row): 4 labels = one 32-bit or one 128-bit store.
constexpr int kPixelsPerThread = 4;
constexpr int kBlockX = 32;
constexpr int kBlockY = 8;
//! Shared-memory floats for the block's low-resolution tile (32 KiB).
constexpr int kTileFloats = 8192;

//! How labels are stored; the confidence levels, when asked for, are stored the same way.
enum LabelFormat : int
{
    kLabelsInt32 = 0,   //!< int32 labels, N x H x W (the TensorRT output)
    kLabelsPacked4 = 1, //!< four uint8 labels per int32, N x H x ceil(W/4), little-endian
    kLabelsUint8 = 2    //!< uint8 labels, N x H x W (outside TensorRT)
};

struct ReweightArgmaxParams
{
    int batch;
    int channels;
    int inHeight;
    int inWidth;
    int outHeight;
    int outWidth;
    float scaleY; //!< source-coordinate scale, computed on the host as PyTorch does (see sourceScale)
    float scaleX;
    int alignCorners;
    int additive;                 //!< 0: score = z * weights[c]; 1: score = z + weights[c] (log weights)
    float weights[kMaxClasses];
};

// Rounded fp32 operations that the compiler may not fuse into FMAs, so that the kernel, the C++
// host reference and the NumPy twin (runtime/reweight_argmax.py) produce identical bits.
#if defined(__CUDA_ARCH__) || defined(DANNET_CUDA_EMULATION)
DANNET_HD float mulRn(float a, float b)
{
    return __fmul_rn(a, b);
}
DANNET_HD float addRn(float a, float b)
{
    return __fadd_rn(a, b);
}
DANNET_HD float divRn(float a, float b)
{
    return __fdiv_rn(a, b);
}
#else
// Host compilers may contract a * b + c into a fused multiply-add wherever the target has one
// (GCC's default outside strict ISO mode is -ffp-contract=fast; x86 has FMA with -mfma or
// -march=native, ARM64 always) and may keep excess precision (x87, -fexcess-precision=fast).
// Storing through a volatile rounds every result to float on its own, whatever the contraction
// and excess-precision flags say. Flags that change the arithmetic itself (-ffast-math: flush of
// subnormals to zero, reassociation) are beyond its reach: the reference is not built with them.
DANNET_HD float mulRn(float a, float b)
{
    float volatile product = a * b;
    return product;
}
DANNET_HD float addRn(float a, float b)
{
    float volatile sum = a + b;
    return sum;
}
DANNET_HD float divRn(float a, float b)
{
    float volatile quotient = a / b;
    return quotient;
}
#endif

//! PyTorch's area_pixel_compute_scale for bilinear upsampling without an explicit scale factor.
DANNET_HD float sourceScale(int inSize, int outSize, int alignCorners)
{
    if (alignCorners)
    {
        return outSize > 1 ? static_cast<float>(inSize - 1) / static_cast<float>(outSize - 1) : 0.0f;
    }
    return static_cast<float>(inSize) / static_cast<float>(outSize);
}

//! PyTorch's area_pixel_compute_source_index (linear modes): clamped at 0 when not aligning corners.
DANNET_HD float sourceIndex(float scale, int dst, int alignCorners)
{
    if (alignCorners)
    {
        return mulRn(scale, static_cast<float>(dst));
    }
    float const src = addRn(mulRn(scale, addRn(static_cast<float>(dst), 0.5f)), -0.5f);
    return src < 0.0f ? 0.0f : src;
}

//! The two source indices and weights of one output coordinate, as PyTorch's kernel forms them.
struct Lerp
{
    int i0;
    int i1;
    float l0;
    float l1;
};

DANNET_HD Lerp lerpAt(float scale, int dst, int inSize, int alignCorners)
{
    float const src = sourceIndex(scale, dst, alignCorners);
    Lerp r;
    r.i0 = static_cast<int>(src);
    r.i1 = r.i0 + (r.i0 < inSize - 1 ? 1 : 0);
    r.l1 = addRn(src, -static_cast<float>(r.i0));
    r.l0 = addRn(1.0f, -r.l1);
    return r;
}

DANNET_HD float bilinear(float v00, float v01, float v10, float v11, Lerp const& ly, Lerp const& lx)
{
    float const top = addRn(mulRn(lx.l0, v00), mulRn(lx.l1, v01));
    float const bottom = addRn(mulRn(lx.l0, v10), mulRn(lx.l1, v11));
    return addRn(mulRn(ly.l0, top), mulRn(ly.l1, bottom));
}

DANNET_HD float score(float value, float weight, int additive)
{
    return additive ? addRn(value, weight) : mulRn(value, weight);
}

//! The running softmax denominator sum_c exp(s_c - best) of one pixel after one more class's score
//! ``s``, given ``best``, the maximum of the scores before it (-FLT_MAX before the first). When ``s``
//! is a new maximum the sum so far is rescaled to it, by exp(best - s), and ``s`` adds exp(0) = 1;
//! otherwise ``s`` adds exp(s - best). One exponential of a non-positive number either way, so
//! nothing overflows and the winner's own term is exactly 1. ``moves`` is the comparison that
//! decides the label (strict: a tie does not move the maximum).
DANNET_HD float softmaxDenominator(float sum, float best, float s)
{
    bool const moves = s > best;
    float const difference = addRn(s, -best);
    float const e = expf(moves ? -difference : difference);
    return moves ? addRn(mulRn(sum, e), 1.0f) : addRn(sum, e);
}

//! A pixel's confidence level, floor(255 p + 0.5) with p = 1 / sum, from its softmax denominator.
//! Finite scores give sum >= 1 (the winner's term), so a level in 0..255; the clamps give every
//! other input one too (NaN scores: 0, scores that are all -inf: 255) rather than an undefined cast.
DANNET_HD int confidenceLevel(float sum)
{
    float const level = addRn(mulRn(divRn(1.0f, sum), 255.0f), 0.5f);
    return level >= 255.0f ? 255 : level >= 0.0f ? static_cast<int>(level) : 0;
}

#if defined(__CUDACC__) || defined(DANNET_CUDA_EMULATION)

__device__ __forceinline__ float toFloat(float v)
{
    return v;
}

//! fp16 travels as its 16-bit pattern so that no fp16 header is needed (NVRTC compiles this alone).
__device__ __forceinline__ float toFloat(unsigned short bits)
{
#if defined(DANNET_CUDA_EMULATION)
    return cudaEmulation::halfBitsToFloat(bits); // the emulation's cvt.f32.f16: inline PTX cannot run there
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
    return f;
#endif
}

//! Stores a thread's ``count`` values (labels or confidence levels, each 0..255), the pixels from
//! (row, x) on, in ``kFormat``: one 32-bit (pack4, uint8) or one 128-bit (int32) store where the
//! row's alignment allows it.
template <int kFormat>
__device__ __forceinline__ void storePixels(void* __restrict__ out, int const (&value)[kPixelsPerThread],
    long long row, int x, int count, int outWidth)
{
    if (kFormat == kLabelsPacked4)
    {
        int const packedWidth = (outWidth + 3) / 4;
        unsigned int word = 0;
        for (int k = 0; k < count; ++k)
        {
            word |= static_cast<unsigned int>(value[k]) << (8 * k);
        }
        static_cast<unsigned int*>(out)[row * packedWidth + x / 4] = word;
    }
    else if (kFormat == kLabelsUint8)
    {
        unsigned char* pixels = static_cast<unsigned char*>(out) + row * outWidth + x;
        if (count == 4 && (outWidth & 3) == 0)
        {
            *reinterpret_cast<unsigned int*>(pixels) = static_cast<unsigned int>(value[0]) | (value[1] << 8)
                | (value[2] << 16) | (static_cast<unsigned int>(value[3]) << 24);
        }
        else
        {
            for (int k = 0; k < count; ++k)
            {
                pixels[k] = static_cast<unsigned char>(value[k]);
            }
        }
    }
    else
    {
        int* pixels = static_cast<int*>(out) + row * outWidth + x;
        if (count == 4 && (outWidth & 3) == 0)
        {
            *reinterpret_cast<int4*>(pixels) = make_int4(value[0], value[1], value[2], value[3]);
        }
        else
        {
            for (int k = 0; k < count; ++k)
            {
                pixels[k] = value[k];
            }
        }
    }
}

//! kConfidence: also the confidence levels, into ``confidence`` (else unused), in the labels' format.
//! A template parameter rather than a run-time flag, so that the labels-only kernels stay as they were.
template <typename T, int kFormat, bool kConfidence>
__device__ void reweightArgmax(T const* __restrict__ logits, void* __restrict__ labels,
    void* __restrict__ confidence, ReweightArgmaxParams const& p)
{
    __shared__ float tile[kTileFloats];
    int const n = blockIdx.z;
    int const blockCol = blockIdx.x * kBlockX * kPixelsPerThread;
    int const blockRow = blockIdx.y * kBlockY;
    int const x = blockCol + threadIdx.x * kPixelsPerThread;
    int const y = blockRow + threadIdx.y;
    int const plane = p.inHeight * p.inWidth;
    T const* src = logits + static_cast<long long>(n) * p.channels * plane;

    // The low-resolution window this block reads, staged once in shared memory when it fits
    // (for DANNet's upsampling it does); otherwise every thread reads through the read-only cache.
    int const lastRow = min(blockRow + kBlockY, p.outHeight) - 1;
    int const lastCol = min(blockCol + kBlockX * kPixelsPerThread, p.outWidth) - 1;
    int const r0 = lerpAt(p.scaleY, blockRow, p.inHeight, p.alignCorners).i0;
    int const r1 = lerpAt(p.scaleY, lastRow, p.inHeight, p.alignCorners).i1;
    int const c0 = lerpAt(p.scaleX, blockCol, p.inWidth, p.alignCorners).i0;
    int const c1 = lerpAt(p.scaleX, lastCol, p.inWidth, p.alignCorners).i1;
    int const tileH = r1 - r0 + 1;
    int const tileW = c1 - c0 + 1;
    int const tilePlane = tileH * tileW;
    bool const staged = p.channels * tilePlane <= kTileFloats;
    if (staged)
    {
        int const threads = kBlockX * kBlockY;
        for (int i = threadIdx.y * kBlockX + threadIdx.x; i < p.channels * tilePlane; i += threads)
        {
            int const c = i / tilePlane; // staging only: the per-pixel loop below has no division
            int const rem = i - c * tilePlane;
            int const r = rem / tileW;
            tile[i] = toFloat(__ldg(src + c * plane + (r0 + r) * p.inWidth + c0 + (rem - r * tileW)));
        }
        __syncthreads();
    }
    if (y >= p.outHeight || x >= p.outWidth)
    {
        return;
    }

    Lerp const ly = lerpAt(p.scaleY, y, p.inHeight, p.alignCorners);
    Lerp lx[kPixelsPerThread];
    int offset[kPixelsPerThread][4]; // the four neighbours, as offsets into the tile or the plane
    int const count = min(kPixelsPerThread, p.outWidth - x);
    for (int k = 0; k < kPixelsPerThread; ++k)
    {
        lx[k] = lerpAt(p.scaleX, min(x + k, p.outWidth - 1), p.inWidth, p.alignCorners);
        int const rowStride = staged ? tileW : p.inWidth;
        int const ra = staged ? ly.i0 - r0 : ly.i0;
        int const rb = staged ? ly.i1 - r0 : ly.i1;
        int const ca = staged ? lx[k].i0 - c0 : lx[k].i0;
        int const cb = staged ? lx[k].i1 - c0 : lx[k].i1;
        offset[k][0] = ra * rowStride + ca;
        offset[k][1] = ra * rowStride + cb;
        offset[k][2] = rb * rowStride + ca;
        offset[k][3] = rb * rowStride + cb;
    }

    float best[kPixelsPerThread];
    float sum[kPixelsPerThread]; // softmax denominators (confidence kernels only)
    int label[kPixelsPerThread];
    for (int k = 0; k < kPixelsPerThread; ++k)
    {
        best[k] = -3.402823466e38f;
        sum[k] = 0.0f;
        label[k] = 0;
    }
    for (int c = 0; c < p.channels; ++c)
    {
        float const w = p.weights[c];
        for (int k = 0; k < kPixelsPerThread; ++k)
        {
            float v[4];
            for (int j = 0; j < 4; ++j)
            {
                v[j] = staged ? tile[c * tilePlane + offset[k][j]] : toFloat(__ldg(src + c * plane + offset[k][j]));
            }
            float const s = score(bilinear(v[0], v[1], v[2], v[3], ly, lx[k]), w, p.additive);
            if (kConfidence)
            {
                sum[k] = softmaxDenominator(sum[k], best[k], s); // before best moves to s
            }
            if (s > best[k]) // strict: ties keep the lowest class index
            {
                best[k] = s;
                label[k] = c;
            }
        }
    }

    long long const row = static_cast<long long>(n) * p.outHeight + y;
    storePixels<kFormat>(labels, label, row, x, count, p.outWidth);
    if (kConfidence)
    {
        int level[kPixelsPerThread];
        for (int k = 0; k < kPixelsPerThread; ++k)
        {
            level[k] = confidenceLevel(sum[k]);
        }
        storePixels<kFormat>(confidence, level, row, x, count, p.outWidth);
    }
}

// One extern "C" kernel per (input type, label format), labels only or with confidence, so NVRTC
// users find them by name. Each family of six has one signature (the logits as void const*), so the
// launcher keeps each in one table.
#define DANNET_REWEIGHT_ARGMAX_KERNEL(NAME, T, FORMAT)                                                                \
    extern "C" __global__ void __launch_bounds__(kBlockX* kBlockY)                                                     \
        NAME(void const* __restrict__ logits, void* __restrict__ labels, ReweightArgmaxParams const p)                 \
    {                                                                                                                  \
        reweightArgmax<T, FORMAT, false>(static_cast<T const*>(logits), labels, nullptr, p);                           \
    }
#define DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL(NAME, T, FORMAT)                                                     \
    extern "C" __global__ void __launch_bounds__(kBlockX* kBlockY) NAME(void const* __restrict__ logits,               \
        void* __restrict__ labels, void* __restrict__ confidence, ReweightArgmaxParams const p)                        \
    {                                                                                                                  \
        reweightArgmax<T, FORMAT, true>(static_cast<T const*>(logits), labels, confidence, p);                         \
    }

DANNET_REWEIGHT_ARGMAX_KERNEL(reweightArgmaxF32I32, float, kLabelsInt32)
DANNET_REWEIGHT_ARGMAX_KERNEL(reweightArgmaxF32Packed4, float, kLabelsPacked4)
DANNET_REWEIGHT_ARGMAX_KERNEL(reweightArgmaxF32U8, float, kLabelsUint8)
DANNET_REWEIGHT_ARGMAX_KERNEL(reweightArgmaxF16I32, unsigned short, kLabelsInt32)
DANNET_REWEIGHT_ARGMAX_KERNEL(reweightArgmaxF16Packed4, unsigned short, kLabelsPacked4)
DANNET_REWEIGHT_ARGMAX_KERNEL(reweightArgmaxF16U8, unsigned short, kLabelsUint8)
DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL(reweightArgmaxConfidenceF32I32, float, kLabelsInt32)
DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL(reweightArgmaxConfidenceF32Packed4, float, kLabelsPacked4)
DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL(reweightArgmaxConfidenceF32U8, float, kLabelsUint8)
DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL(reweightArgmaxConfidenceF16I32, unsigned short, kLabelsInt32)
DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL(reweightArgmaxConfidenceF16Packed4, unsigned short, kLabelsPacked4)
DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL(reweightArgmaxConfidenceF16U8, unsigned short, kLabelsUint8)

#undef DANNET_REWEIGHT_ARGMAX_KERNEL
#undef DANNET_REWEIGHT_ARGMAX_CONFIDENCE_KERNEL

#endif // __CUDACC__ || DANNET_CUDA_EMULATION

#if !defined(__CUDACC_RTC__)
} // namespace dannet
struct CUstream_st;
namespace dannet
{
//! Launch on ``stream`` without synchronising (defined in reweightArgmaxKernel.cu); returns a cudaError_t.
//! With a ``confidence`` buffer, the confidence levels go there in the labels' ``format``; with
//! nullptr only the labels are computed (the labels-only kernel).
int launchReweightArgmax(void const* logits, bool fp16, void* labels, void* confidence, LabelFormat format,
    ReweightArgmaxParams const& params, CUstream_st* stream);
#endif

} // namespace dannet
