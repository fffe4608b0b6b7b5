"""Pictures of what distillation does to class prototypes (matplotlib Agg)."""
from .prototype_vis import (batch_prototypes, pca_2d, plot_prototype_pca,
                            plot_similarity_matrix, prototype_similarity)

__all__ = [
    'batch_prototypes', 'pca_2d', 'plot_prototype_pca',
    'plot_similarity_matrix', 'prototype_similarity'
]
