// Fused AM-Softmax kernels: row norms, margin + online log-sum-exp over a tile of cosines,
// the softmax-gradient tile, the loss reduction and the backward pass through L2 normalisation.
// The GEMMs around them run in cuBLAS (see mod.rs). All matrices are row-major f32.
// Launched by host/src/loss/cuda/mod.rs; CPU reference: host/src/loss/fused_cpu.rs.

#define WARP 32
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = WARP / 2; offset > 0; offset /= 2) {
        v += __shfl_down_sync(0xffffffffu, v, offset);
    }
    return v;
}

// Merges (m2, s2) into the running max / sum-of-exp pair (m, s).
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    float top = fmaxf(m, m2);
    if (top == NEG_INF) {
        return;
    }
    s = s * __expf(m - top) + s2 * __expf(m2 - top);
    m = top;
}

// inv_norm[r] = 1 / ||v[r, :]|| (inf for a zero row; the host checks).
// v: [rows, dim]. One warp per row; block = 256 threads (8 rows), grid = ceil(rows / 8).
extern "C" __global__ void row_inv_norms(const float *v, int rows, int dim, float *inv_norm) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) {
        return;
    }
    const float *r = v + (size_t)row * dim;
    float acc = 0.0f;
    for (int k = lane; k < dim; k += WARP) {
        acc += r[k] * r[k];
    }
    acc = warp_sum(acc);
    if (lane == 0) {
        inv_norm[row] = 1.0f / sqrtf(acc);
    }
}

// out[r, k] = v[r, k] * inv_norm[r]. v, out: [rows, dim]. Grid-stride over rows * dim.
extern "C" __global__ void scale_rows(const float *v, const float *inv_norm, int rows, int dim,
                                      float *out) {
    size_t total = (size_t)rows * dim;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        out[i] = v[i] * inv_norm[i / dim];
    }
}

// Online log-sum-exp over one tile of classes [c0, c0 + n).
// dots: [batch, n], x_hat . w_j (raw weight rows); inv_w: [n] inverse norms of those rows;
// labels: [batch]; run_max, run_sum: [batch] running state (merged in place);
// target_cos: [batch], written for rows whose label lies in the tile.
// One block per row: grid = batch, block = 256 threads.
extern "C" __global__ void tile_lse(const float *dots, const float *inv_w, const unsigned *labels,
                                    int batch, int n, int c0, float scale, float margin,
                                    float *run_max, float *run_sum, float *target_cos) {
    __shared__ float shared_max[256];
    __shared__ float shared_sum[256];
    int row = blockIdx.x;
    if (row >= batch) {
        return;
    }
    int target = (int)labels[row] - c0;
    const float *d = dots + (size_t)row * n;

    float m = NEG_INF, s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float cosine = d[j] * inv_w[j];
        float z = scale * (j == target ? cosine - margin : cosine);
        if (j == target) {
            target_cos[row] = cosine;
        }
        if (z > m) {
            s = s * __expf(m - z) + 1.0f;
            m = z;
        } else {
            s += __expf(z - m);
        }
    }
    shared_max[threadIdx.x] = m;
    shared_sum[threadIdx.x] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) {
            float mm = shared_max[threadIdx.x], ss = shared_sum[threadIdx.x];
            lse_merge(mm, ss, shared_max[threadIdx.x + stride], shared_sum[threadIdx.x + stride]);
            shared_max[threadIdx.x] = mm;
            shared_sum[threadIdx.x] = ss;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float mm = run_max[row], ss = run_sum[row];
        lse_merge(mm, ss, shared_max[0], shared_sum[0]);
        run_max[row] = mm;
        run_sum[row] = ss;
    }
}

// lse[r] = run_max[r] + log(run_sum[r]); loss[0] = mean_r(lse[r] - scale * (target_cos[r] - margin)).
// All arrays [batch] except loss [1]. One block of 256 threads.
extern "C" __global__ void finish_loss(const float *run_max, const float *run_sum,
                                       const float *target_cos, int batch, float scale,
                                       float margin, float *lse, float *loss) {
    __shared__ float partial[256];
    float acc = 0.0f;
    for (int r = threadIdx.x; r < batch; r += blockDim.x) {
        float l = run_max[r] + logf(run_sum[r]);
        lse[r] = l;
        acc += l - scale * (target_cos[r] - margin);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) {
            partial[threadIdx.x] += partial[threadIdx.x + stride];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        loss[0] = partial[0] / (float)batch;
    }
}

// In place over one tile: g[r, j] (in: x_hat . w_j) becomes
// coef * (softmax[r, j] - onehot[r, j]) * inv_w[j], with softmax from the saved lse.
// g: [batch, n]; inv_w: [n]; labels, lse: [batch]. Grid-stride over batch * n.
extern "C" __global__ void tile_grad(float *g, const float *inv_w, const unsigned *labels,
                                     const float *lse, int batch, int n, int c0, float scale,
                                     float margin, float coef) {
    size_t total = (size_t)batch * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int row = (int)(i / n);
        int j = (int)(i % n);
        bool is_target = (int)labels[row] - c0 == j;
        float cosine = g[i] * inv_w[j];
        float z = scale * (is_target ? cosine - margin : cosine);
        float p = __expf(z - lse[row]);
        g[i] = coef * (p - (is_target ? 1.0f : 0.0f)) * inv_w[j];
    }
}

// Back through v_hat = v / ||v||, in place on grad [rows, dim]:
// scaled == 0: grad is dL/dv_hat, out = inv * g - v * inv^3 * (v . g);
// scaled == 1: grad is inv * dL/dv_hat, out = g - v * inv^2 * (v . g).
// v: [rows, dim]; inv_norm: [rows]. One warp per row; block = 256, grid = ceil(rows / 8).
extern "C" __global__ void norm_backward(const float *v, const float *inv_norm, float *grad,
                                         int rows, int dim, int scaled) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) {
        return;
    }
    const float *vr = v + (size_t)row * dim;
    float *gr = grad + (size_t)row * dim;
    float dot = 0.0f;
    for (int k = lane; k < dim; k += WARP) {
        dot += vr[k] * gr[k];
    }
    dot = __shfl_sync(0xffffffffu, warp_sum(dot), 0);
    float inv = inv_norm[row];
    float a = scaled ? 1.0f : inv;
    float b = scaled ? inv * inv : inv * inv * inv;
    for (int k = lane; k < dim; k += WARP) {
        gr[k] = a * gr[k] - b * dot * vr[k];
    }
}
