"""bertrepro: an executable reproduction of BERT (Devlin et al., 2018)."""
from .config import BertConfig
from .model import BertForPreTraining, BertForSequenceClassification, BertModel

__all__ = ["BertConfig", "BertModel", "BertForPreTraining", "BertForSequenceClassification"]
__version__ = "0.1.0"
