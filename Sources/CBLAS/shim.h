#include <cblas.h>

// LAPACK (OpenBLAS bundles it; Debian's headers do not declare it): Fortran calling convention,
// column-major, 32-bit integers; the trailing size_t arguments are gfortran's hidden lengths of
// the character arguments.
#include <stddef.h>
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t, size_t);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork,
             int *iwork, int *info, size_t);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
