"""The CUDA C of device preprocessing: Pillow's two 8-bit resample passes and the strip writer.

Images are HxWx3 uint8, rows packed. The resample kernels take the host-computed tables of
``edge.preprocess.pillow_resample`` (first tap, tap count and int32 weights per output pixel) and repeat Pillow's
integer arithmetic: start at 2**21, add pixel * weight, shift right by 22, clip to 0..255. The strip writer reads
one int32 row of ``edge.preprocess.device.strip_map`` per slice and writes the normalised values, looked up in a
256-entry table computed on the host, in the official [B, 3, 14, 14*L] strip layout with zero padding.
"""
from __future__ import annotations

PRECISION_BITS = 22
PATCH = 14
BLOCK = 128  # threads per block along a row
FUNCTIONS = {  # kernel name -> pycuda `prepare` argument types
    "resample_horizontal": "PiiPiiPPPi",
    "resample_vertical": "PiiPiPPPi",
    "write_strips_f32": "PiPiPPP",
    "write_strips_f16": "PiPiPPP",
}

SOURCE = r"""
#define PRECISION_BITS %(bits)d
#define PATCH %(patch)d

__device__ __forceinline__ unsigned char clip8(int sum) {
    int value = sum >> PRECISION_BITS;  /* arithmetic shift, as Pillow's C */
    return (unsigned char)(value < 0 ? 0 : (value > 255 ? 255 : value));
}

/* dst[y, x, :] from src rows row_start + y; one thread per output pixel. */
extern "C" __global__ void resample_horizontal(
        const unsigned char *src, int src_width, int row_start,
        unsigned char *dst, int dst_width, int rows,
        const int *first, const int *count, const int *weights, int taps) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y;
    if (x >= dst_width || y >= rows) return;
    const unsigned char *line = src + ((size_t)(y + row_start) * src_width + first[x]) * 3;
    const int *k = weights + (size_t)x * taps;
    int n = count[x];
    int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
    for (int t = 0; t < n; ++t) {
        int w = k[t];
        s0 += line[3 * t] * w;
        s1 += line[3 * t + 1] * w;
        s2 += line[3 * t + 2] * w;
    }
    unsigned char *out = dst + ((size_t)y * dst_width + x) * 3;
    out[0] = clip8(s0);
    out[1] = clip8(s1);
    out[2] = clip8(s2);
}

/* dst[y, :, :] from src rows first[y] - row_start ..; one thread per output byte (x * 3 + channel). */
extern "C" __global__ void resample_vertical(
        const unsigned char *src, int width, int row_start,
        unsigned char *dst, int rows,
        const int *first, const int *count, const int *weights, int taps) {
    int column = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y;
    int pitch = width * 3;
    if (column >= pitch || y >= rows) return;
    const unsigned char *start = src + (size_t)(first[y] - row_start) * pitch + column;
    const int *k = weights + (size_t)y * taps;
    int n = count[y];
    int sum = 1 << (PRECISION_BITS - 1);
    for (int t = 0; t < n; ++t) sum += start[(size_t)t * pitch] * k[t];
    dst[(size_t)y * pitch + column] = clip8(sum);
}

/* Strips of every slice: blockIdx.z = slice, blockIdx.y = channel * 14 + row in the patch, x = strip column.
   params[8 * slice]: image (0 overview, 1 refined), x0, y0, cols, rows, output offset, strip patches L, unused. */
#define WRITE_STRIPS(NAME, T)                                                                          \
extern "C" __global__ void NAME(                                                                       \
        const unsigned char *overview, int overview_width,                                             \
        const unsigned char *refined, int refined_width,                                               \
        const int *params, const T *table, T *out) {                                                   \
    const int *p = params + 8 * blockIdx.z;                                                            \
    int length = p[6];                                                                                 \
    int column = blockIdx.x * blockDim.x + threadIdx.x;                                                \
    if (column >= PATCH * length) return;                                                              \
    int channel = blockIdx.y / PATCH, row = blockIdx.y %% PATCH;                                       \
    T *line = out + p[5] + ((size_t)channel * PATCH + row) * PATCH * length;                           \
    int patch = column / PATCH, cols = p[3];                                                           \
    if (patch >= cols * p[4]) { line[column] = (T)0; return; }                                         \
    int y = p[2] + (patch / cols) * PATCH + row;                                                       \
    int x = p[1] + (patch %% cols) * PATCH + column %% PATCH;                                          \
    const unsigned char *image = p[0] ? refined : overview;                                            \
    int width = p[0] ? refined_width : overview_width;                                                 \
    line[column] = table[image[((size_t)y * width + x) * 3 + channel]];                                \
}
WRITE_STRIPS(write_strips_f32, float)
WRITE_STRIPS(write_strips_f16, unsigned short)
""" % {"bits": PRECISION_BITS, "patch": PATCH}
