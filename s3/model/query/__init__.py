"""Query transformer: object queries, the discriminative query read and the auxiliary mask heads."""

from s3.model.query.attention import PixelReadFromQueries, QueryFFN, QuerySelfAttention
from s3.model.query.attention_mask import foreground_attention_mask
from s3.model.query.block import QUERY_READS, QueryTransformerBlock
from s3.model.query.cutie_read import MaskedCrossAttentionRead
from s3.model.query.discriminative_read import DiscriminativeQueryRead
from s3.model.query.transformer import AuxMaskHead, PrologueOutput, QueryTransformer

__all__ = [
    "QUERY_READS",
    "AuxMaskHead",
    "DiscriminativeQueryRead",
    "MaskedCrossAttentionRead",
    "PixelReadFromQueries",
    "PrologueOutput",
    "QueryFFN",
    "QuerySelfAttention",
    "QueryTransformer",
    "QueryTransformerBlock",
    "foreground_attention_mask",
]
