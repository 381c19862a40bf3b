from .baselines import chance_miou
from .predictions import predictions_to_label_maps
from .sem_seg import SANSemSegEvaluator
from .summary import SUMMARY_METRICS, format_summary, verify_san_results, write_results_json

__all__ = ["SUMMARY_METRICS", "format_summary", "write_results_json", "verify_san_results",
           "chance_miou", "predictions_to_label_maps", "SANSemSegEvaluator"]
